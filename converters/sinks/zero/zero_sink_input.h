// ZeroSinkInput: everything the ZeRO sink (zero_sink.h) needs to write the checkpoint DeepSpeed
// saves at a target topology, whichever way it was built:
//   * ZeroSinkInputFromIndex: a DeepSpeed ZeRO-0/1/2/3 tag folder (a CheckpointIndex): each
//     parameter's merged tensor is its fragments in merged order; the trees are rank 0's files;
//   * ZeroSinkInputFromUcp: the UCP folder ds_to_universal writes (§5): zero/<param>/<state>.pt,
//     step.pt, the copied model-states files (ZeRO-1/2: mp_rank_00; ZeRO-3: every zero_pp_rank_*)
//     and zero/optimizer_state.pt;
//   * ZeroSinkInputFromMemory (memory_input.h): the runtime's parameters and optimizer state,
//     served by a callback.
// It holds the non-tensor trees DeepSpeed writes (model-states skeleton, optimizer scalars and
// param groups, steps, MoE / AutoEP records, client state, frozen and tied parameters) as pickled
// Values, so that they are re-saved exactly, and every tensor as byte runs of `sources`: only
// metadata is read (docs/reshard.md, docs/architecture.md "One ZeRO sink").
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/plan/storage_frames.h"
#include "formats/base/byte_source.h"
#include "formats/base/dtype.h"
#include "formats/base/shape.h"
#include "formats/torch/pickle_value.h"
#include "formats/torch/torch_file.h"
#include "ucp/source.h"
#include "ucp/topology.h"
#include "ucp/tp_layout.h"

namespace ucp::converters::sinks {

using formats::torch::StorageRef;
using formats::torch::Value;

// The row-major bytes of one tensor as runs of ZeroSinkInput::sources.
using TensorRuns = plan::TensorRuns;

// A trainable parameter: its merged tensor's states.
struct SinkParam {
  std::string name;
  Shape shape;          // param_shapes entry of the source (experts: EP-local at the source's ep)
  int group = 0;        // index into ZeroSinkInput::groups
  bool expert = false;  // AutoEP fused / native MoE expert weight: merged tensor stacks EP ranks
  int num_experts = 0;  // AutoEP: the layer's experts; native MoE: the source's ep (rows stacked)
  std::array<TensorRuns, deepspeed::kNumStates> states;  // fp32, exp_avg, exp_avg_sq (merged)
  // Whole-tensor inputs (module_per_tensor) built here, not read from a module (tp merge): the
  // module weight's bytes, in the module's dtype. Unset: the model_root module's tensor.
  std::optional<TensorRuns> weight;
};

// A partitioned group of the source: ZeRO-0/1/2 a torch optimizer param group; ZeRO-3 a sub-group
// (its param group, hyper-parameters and step live in the optimizer template).
struct SinkGroup {
  bool expert = false;          // partitioned over the expert-DP group
  std::vector<int> params;      // indices into ZeroSinkInput::params, flat order
  const Value* step = nullptr;  // ZeRO-0/1/2: base optimizer state[g].step; nullptr: none
  const Value* hyperparameters = nullptr;  // ZeRO-0/1/2: base optimizer param_groups[g]
};

// A frozen parameter's whole tensor (the ZeRO-3 writer partitions it, §4.3).
struct SinkFrozen {
  std::string name;
  Shape shape;
  TensorRuns bytes;
};

enum class SinkInputKind : uint8_t { kZeroFolder, kUcpFolder, kMemory };

struct ZeroSinkInput {
  SinkInputKind kind = SinkInputKind::kZeroFolder;
  // A tensor-parallel checkpoint (topology.tp > 1, ZeRO-1/2) is one input per TP rank: this one
  // holds TP rank `mp_rank`'s slices (params' shapes and states), its mp_rank_XX model-states file
  // and optimizer template; sources, groups and hyper-parameters are the same in every one.
  int mp_rank = 0;
  std::string origin;  // the folder read (or the memory checkpoint's name), for messages
  // Plan source i is sources[i]; ucp::ByteRun::file indexes it. storage_runs locates every
  // storage of the trees below (model_root's module, steps, ...).
  std::vector<std::shared_ptr<const ByteSource>> sources;
  // The first num_file_sources sources are files read from disk (plan sources with a path, which
  // the output guard checks and RunPlan is given); the others are bytes in memory or computed.
  int num_file_sources = 0;
  plan::StorageRuns storage_runs;
  // Owners of the Values below (TorchFiles, arenas): kept alive with the input.
  std::vector<std::shared_ptr<const void>> owners;

  std::vector<SinkParam> params;
  std::vector<SinkGroup> groups;
  std::vector<SinkFrozen> frozen;  // ZeRO-3 sources
  // Frozen parameters the source records (the index's; -1: count model_root's frozen_param_shapes
  // or `frozen`), for PlanInfo: the count `ucp convert` reports for the same checkpoint.
  int frozen_params = -1;
  // The source's layout: zero_stage 0 means whole tensors (a ZeRO-0 folder, or memory): the module
  // is rebuilt as flat-group views and the ZeRO wrapper's state is `optimizer_template` or a fresh
  // DeepSpeedZeroOptimizer's.
  int zero_stage = 1;
  // The module holds one tensor per parameter (ZeRO-0, memory, a TP merge), not ZeRO-1/2's flat
  // group views: the writer rebuilds it as flat-group views and writes param_shapes and
  // shared_params (from `shared_params`).
  bool module_per_tensor = false;
  bool bf16_optimizer = false;  // BF16_Optimizer (§3.6; writes it again at a ZeRO-1 target)
  ucp::Topology topology;       // dp and ep (AutoEP autoep_size / native MoE ep_size) of the source

  // Native DeepSpeed MoE (§2.5; docs/reshard.md "Native MoE"): the model file's num_experts per MoE
  // layer (empty otherwise); from a ZeRO folder also its layer_*_expert_* files as (basename,
  // index into `sources`), copied unchanged.
  std::vector<int> native_moe_num_experts;
  std::vector<std::pair<std::string, int>> native_expert_files;
  // zero_stage 0: tied aliases (alias → stored name), which a ZeRO-0 model file does not record.
  std::vector<std::pair<std::string, std::string>> shared_params;

  // Templates. model_root: the (rank 0) model-states dict. optimizer_template: ZeRO-1/2 the
  // optimizer_state_dict holding the wrapper's scalar keys (loss_scaler, dynamic_loss_scale,
  // overflow, clip_grad, zero_stage, ds_version, universal_checkpoint_info); ZeRO-3 the whole
  // optimizer_state_dict; zero_stage 0: the scalars to write, or nullptr for a fresh optimizer's.
  const Value* model_root = nullptr;
  const Value* optimizer_template = nullptr;
};

// From an opened ZeRO-0/1/2/3 index: one input per TP rank (ZeRO-1/2 may have tp > 1).
// Unimplemented for pp > 1, or tp > 1 at ZeRO-0 / ZeRO-3.
absl::StatusOr<std::vector<ZeroSinkInput>> ZeroSinkInputsFromIndex(
    const deepspeed::CheckpointIndex& index);
// The same for tp = 1 (InvalidArgument otherwise).
absl::StatusOr<ZeroSinkInput> ZeroSinkInputFromIndex(const deepspeed::CheckpointIndex& index);

// From a ZeRO-1/2 or ZeRO-3 UCP folder, for a target tensor-parallel size `tp` (0: the UCP's):
// at the UCP's tp, one input per TP rank of the model-states files it keeps (mp_rank_XX; each
// rank's slices cut from the merged tensors by the universal_checkpoint_info rules, as DeepSpeed's
// universal load cuts them); at tp 1, one merged input (MergeTpRanks). NotFound for a missing file
// (named), FailedPrecondition for one converted from ZeRO-0 (no param_shapes), Unimplemented for
// ZeRO-3 with tp > 1, another tp than the UCP's or 1, and a slice DeepSpeed pads (vocabulary
// padding), DataLoss for malformed files.
absl::StatusOr<std::vector<ZeroSinkInput>> ZeroSinkInputsFromUcp(const std::string& ucp_dir,
                                                                 int tp = 0);
// The same for tp = 1 (InvalidArgument otherwise).
absl::StatusOr<ZeroSinkInput> ZeroSinkInputFromUcp(const std::string& ucp_dir);

namespace internal_sink {

// Adds `file` as the next source and locates its storages; returns its index.
absl::StatusOr<int> AddTorchFile(std::shared_ptr<const formats::torch::TorchFile> file,
                                 ZeroSinkInput* in);
// The first `numel` elements of a contiguous tensor of a file added with AddTorchFile, as a run.
absl::StatusOr<ucp::ByteRun> TensorRun(const ZeroSinkInput& in, const formats::torch::TensorRef& t,
                                       int64_t numel, absl::string_view what);
// name → num_experts of every AutoEP fused expert weight of a model-states root (ds_autoep_layers,
// or its legacy key); sets *ep to the layers' ep_size.
absl::StatusOr<absl::flat_hash_map<std::string, int>> AutoEpExperts(const Value& root,
                                                                    absl::string_view what,
                                                                    int* ep);

// ucp_tp_input.cc: the TP cut of every parameter of a tensor-parallel UCP (from the param_shapes
// of its mp_rank_XX files and their universal_checkpoint_info), and the per-TP-rank inputs of a
// merged one.
struct TpCuts {
  absl::flat_hash_map<std::string, ucp::TpLayout> layouts;
  absl::flat_hash_map<std::string, Shape> merged_shapes;
};
absl::StatusOr<TpCuts> TpCutsOf(const std::vector<const Value*>& roots,
                                const std::vector<std::string>& paths);
absl::StatusOr<std::vector<ZeroSinkInput>> SplitTpRanks(const ZeroSinkInput& merged,
                                                        const std::vector<const Value*>& roots,
                                                        const TpCuts& cuts);
// The merged input written at tp 1: whole tensors, the module rebuilt from the fp32 masters
// (cast to the module's dtype), TP rank 0's model states at tp 1. Unimplemented when a
// non-trainable module entry is TP-sliced.
absl::StatusOr<ZeroSinkInput> MergeTpRanks(ZeroSinkInput merged,
                                           const std::vector<const Value*>& roots,
                                           const std::vector<std::string>& paths);

}  // namespace internal_sink
}  // namespace ucp::converters::sinks
