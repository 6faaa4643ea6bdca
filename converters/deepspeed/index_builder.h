// The steps OpenCheckpoint runs, one concept per file, and the helpers they share. Internal to
// converters/deepspeed: each step fills part of a CheckpointIndex and returns errors that name the
// file and key.
//   checkpoint_files.cc  list, classify, open and check the file grid; stage, wrapper, world sizes
//   model_metadata.cc    AutoEP layers, universal_checkpoint_info, frozen / tied params, buffers
//   zero12_index.cc      ZeRO-1/2 and BF16_Optimizer fragments (§3)
//   zero3_index.cc       ZeRO-3 fragments (§4)
//   zero0_index.cc       ZeRO-0: the torch optimizer state inside the model-states file
//   native_moe.cc        native DeepSpeed MoE (num_experts, local-id expert names)
//   model_consistency.cc the model-states files against the shards (run, stage, step)
//   checkpoint_index.cc  OpenCheckpoint, the shared helpers below, final checks
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "formats/deepspeed/value_access.h"
#include "ucp/shard_layout.h"

namespace ucp::converters::deepspeed::internal_ds {

// checkpoint_files.cc: resolves nothing; lists dir.tag_dir, opens the files, fills files,
// optim_files, model_files, expert_files and topology (stage, wrapper, dp/tp/pp/mp sizes).
absl::Status LoadFiles(const OpenOptions& options, CheckpointIndex* index);

// model_metadata.cc
// ds_autoep_layers → autoep_layers and topology.ep / edp_size / use_data_before_...;
// Unimplemented for native MoE.
absl::Status ReadAutoEp(CheckpointIndex* index);
absl::Status ReadUniversalCheckpointInfo(CheckpointIndex* index);
// frozen_params, shared_params, buffer_names (after the stage indexers: uses dp/mp grids).
absl::Status ReadModelExtras(CheckpointIndex* index);

absl::Status IndexZero12(CheckpointIndex* index);
absl::Status IndexZero3(CheckpointIndex* index);
// zero0_index.cc: ZeRO-0, the torch optimizer state inside the model-states file.
absl::Status IndexZero0(CheckpointIndex* index);
// native_moe.cc: num_experts without ds_autoep_layers → native_moe_num_experts, ep/edp sizes.
absl::Status ReadNativeMoe(CheckpointIndex* index);
// The ExpertInfo of a native-MoE expert parameter; `layer_prefixes` numbers the MoE modules in
// order of first appearance.
absl::StatusOr<ExpertInfo> NativeExpertInfo(const CheckpointIndex& index, const std::string& name,
                                            std::vector<std::string>* layer_prefixes);

// model_consistency.cc: the model-states files against the optimizer shards (stage, step), after
// the indexers; FailedPrecondition naming both files.
absl::Status CheckModelAgainstShards(const CheckpointIndex& index);

// --- helpers (checkpoint_index.cc) -------------------------------------------------------------

// One param_shapes entry: name → shape, in order.
using GroupShapes = std::vector<std::pair<std::string, Shape>>;
// model_root[param_shapes]: a list of OD name → torch.Size.
absl::StatusOr<std::vector<GroupShapes>> ReadParamShapes(const Value& model_root);

// The location of elements [start, start + numel) of a contiguous tensor in file `file`.
// DataLoss when the range is outside the tensor.
absl::StatusOr<TensorLocation> Locate(const CheckpointIndex& index, int file,
                                      const formats::torch::TensorRef& tensor, int64_t start,
                                      int64_t numel, absl::string_view what);

// The fragment of DP rank `dp` that a ShardLayout piece describes, located in the rank's state
// tensors (fp32, exp_avg, exp_avg_sq) of file `file` at the piece's partition offset.
absl::StatusOr<Fragment> PieceFragment(
    const CheckpointIndex& index, int file, int dp, const ucp::RankShard& rank,
    const ucp::ShardPiece& piece, const formats::torch::TensorRef* const (&tensors)[kNumStates],
    absl::string_view param_name);

// Expert fused-param name → index into index.autoep_layers.
absl::flat_hash_map<std::string, int> ExpertParamNames(const CheckpointIndex& index);

// Elements of a shape that formats::deepspeed::AsShape returned (it checked the product).
inline int64_t ShapeNumel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape.dims()) n *= d;
  return n;
}

// a + b for element counts from files; DataLoss naming `what` on overflow.
absl::StatusOr<int64_t> AddCount(int64_t a, int64_t b, absl::string_view what);

// A parameter of MP rank 0 (no slices yet). AutoEP experts (named in `expert_names`) must have
// num_local_experts in dim 0 and a merged [num_experts, ...] shape within kMaxTensorElements.
absl::StatusOr<Parameter> NewParam(const CheckpointIndex& index,
                                   const absl::flat_hash_map<std::string, int>& expert_names,
                                   const std::string& name, const Shape& shape, int param_group,
                                   int flat_group);

// MP rank mp > 0: its param_shapes must list the same names per flat group as MP rank 0; appends
// a slice (with that rank's shape) to each parameter.
absl::Status AddSlices(int mp, const std::vector<GroupShapes>& shapes, CheckpointIndex* index);

// FailedPrecondition unless `step` equals `reference` (same kind; ints/floats by value, 0-dim
// tensors by dtype and element bytes, which are read: they are a few bytes).
absl::Status CheckSameStep(const CheckpointIndex& index, int file, const Value* step,
                           int reference_file, const Value* reference, absl::string_view what);

// "path: " context for errors about file `file`.
std::string FileContext(const CheckpointIndex& index, int file);

}  // namespace ucp::converters::deepspeed::internal_ds
