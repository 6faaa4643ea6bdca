// CheckpointIndex: a typed, metadata-only description of one DeepSpeed ZeRO checkpoint (a tag
// folder, deepspeed-formats.md §1-§4, §7). OpenCheckpoint reads the zip directories and pickles of
// the model-states and optimizer files (never a tensor payload, except the 0-dim `step` scalars it
// compares across ranks) and answers, for every trainable parameter, where each of its optimizer
// states lives: which file, which storage record, which byte offset, how many elements.
//
// What it describes, per stage:
//   ZeRO-1/2 and BF16_Optimizer (§3): one flat partition per optimizer param group and DP rank;
//     fragments come from `param_slice_mappings` and are checked against the layout that
//     `param_shapes` implies.
//   ZeRO-3 (§4): one flat partition per sub-group and DP rank; fragments are computed from
//     `param_shapes` with P = ceil(numel / W), padding skipped.
//   AutoEP (§4.4, §7): fused expert params (<prefix>.w1/w2/w3) are partitioned over the
//     expert-data-parallel group of their EP rank; their fragments say which EP rank's local
//     tensor ([E_local, ...]) they belong to and where they land in the merged
//     [num_experts, ...] tensor.
// Everything a UCP writer needs besides tensor bytes is here too: hyper-parameters and `step`
// values (as pickled Values, to reproduce them exactly), frozen and tied params, buffers, AutoEP
// layers, universal_checkpoint_info, and the open TorchFiles with their value trees.
//
//   ZeRO-0 (no optimizer shards): one fragment per parameter in the model-states file, the torch
//     optimizer's params named by matching shapes against `module` (zero0_index.cc).
//   Native DeepSpeed MoE, ZeRO-1/2 (native_moe.cc): expert params are named by local id; their
//     fragments carry the EP rank, and the merged tensor stacks EP ranks on a new dim 0.
// Not supported (Unimplemented, naming what was found): ZeRO-0 with FP16/BF16 wrappers, pipeline
// parallelism (pp > 1, layer files), native DeepSpeed MoE, round-robin gradients, elastic
// checkpoints, NVMe offload, MiCS, folded AutoEP+AutoTP. See docs/deepspeed-index.md.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "formats/base/dtype.h"
#include "formats/base/shape.h"
#include "formats/deepspeed/file_names.h"
#include "formats/torch/torch_file.h"
#include "ucp/topology.h"

namespace ucp::converters::deepspeed {

using formats::torch::TorchFile;
using formats::torch::Value;

// Which DeepSpeed optimizer wrapper wrote the shards (§1.3).
enum class OptimizerWrapper : uint8_t {
  kZeroOptimizer,   // DeepSpeedZeroOptimizer, ZeRO stage 1 or 2
  kBf16Optimizer,   // BF16_Optimizer: no zero_stage / loss_scaler keys, fp32 partitions unstripped
  kZeroStage3,      // DeepSpeedZeroOptimizer_Stage3
  kTorchOptimizer,  // no ZeRO (stage 0): the torch optimizer's state_dict inside the model-states
                    // file
};
absl::string_view OptimizerWrapperName(OptimizerWrapper wrapper);

// What kind of ZeRO checkpoint it is, besides its topology (index.topology, ucp/topology.h).
struct ZeroKind {
  int zero_stage =
      1;  // 0, 1, 2 or 3 (BF16_Optimizer: 1; 0: no optimizer shards, see zero0_index.cc)
  OptimizerWrapper wrapper = OptimizerWrapper::kZeroOptimizer;
  DType master_dtype = DType::kF32;  // the "fp32" master partitions (and UCP fp32.pt)
  DType state_dtype = DType::kF32;   // exp_avg / exp_avg_sq
};

// The optimizer states the index locates; the names are the UCP file stems.
enum class StateKind : uint8_t { kFp32, kExpAvg, kExpAvgSq };
inline constexpr int kNumStates = 3;
inline constexpr StateKind kAllStates[kNumStates] = {StateKind::kFp32, StateKind::kExpAvg,
                                                     StateKind::kExpAvgSq};
absl::string_view StateName(StateKind state);  // "fp32", "exp_avg", "exp_avg_sq"

// A run of `numel` contiguous elements inside one storage record of one file.
struct TensorLocation {
  int file = -1;               // index into CheckpointIndex::files
  std::string record;          // zip member, e.g. "zero_pp_rank_0_mp_rank_00_optim_states/data/3"
  uint64_t record_offset = 0;  // bytes into the record (the tensor's storage_offset included)
  uint64_t file_offset = 0;    // bytes into the file (the record payload's offset + record_offset)
  int64_t numel = 0;
  DType dtype = DType::kF32;
  bool requires_grad = false;  // of the source tensor (DeepSpeed's merged UCP tensor inherits it)

  uint64_t num_bytes() const { return static_cast<uint64_t>(numel) * DTypeSize(dtype); }
};

// The part of one parameter that one DP rank holds, with its location in each state.
struct Fragment {
  int dp_rank = 0;
  int ep_rank = 0;         // AutoEP experts: the EP rank whose local tensor this is; else 0
  int partition_rank = 0;  // rank inside the partition group: dp_rank, or the expert-DP rank
  int64_t offset = 0;      // first element in the flattened (EP-local) parameter
  int64_t merged_offset =
      0;  // first element in the flattened merged tensor: ep_rank * local numel + offset
  int64_t numel = 0;
  std::array<TensorLocation, kNumStates> states;  // indexed by StateKind

  const TensorLocation& state(StateKind s) const { return states[static_cast<int>(s)]; }
};

// One MP rank's piece of a parameter (the whole parameter when topology.mp() == 1).
struct ParamSlice {
  int mp_rank = 0;
  Shape shape;  // param_shapes on that MP rank; AutoEP experts: the EP-local [E_local, ...]
  // Ordered by merged_offset. For each EP rank (only rank 0 for dense params) the fragments tile
  // [0, shape numel) exactly, in partition-rank order.
  std::vector<Fragment> fragments;
};

struct ExpertInfo {
  int layer = 0;  // index into CheckpointIndex::autoep_layers (native MoE: the MoE layer)
  int num_experts = 0;
  int num_local_experts = 0;
  // Native DeepSpeed MoE (native_moe.cc): the parameter is one local expert's weight, named by its
  // local id; the UCP tensor stacks the EP ranks' copies on a new dim 0, so here num_experts =
  // ep_size (the UCP's rows, its `ep_num_experts`) and num_local_experts = 1.
  bool stacked = false;
};

struct Parameter {
  std::string name;
  Shape shape;          // param_shapes on MP rank 0 (EP-local for AutoEP experts)
  int param_group = 0;  // torch optimizer param group (hyper-parameters)
  int flat_group = 0;   // ZeRO-1/2: == param_group; ZeRO-3: the sub-group (param_shapes index)
  std::optional<ExpertInfo> expert;  // set for AutoEP fused expert weights
  std::vector<ParamSlice> slices;    // one per MP rank, in MP rank order

  bool is_expert() const { return expert.has_value(); }
  int64_t numel() const;  // of `shape`
  // The UCP tensor's shape when topology.mp() == 1: `shape`, with dim 0 = num_experts for experts.
  Shape merged_shape() const;
};

// What one (MP rank, DP rank) shard holds of a flat group.
struct FlatGroupRank {
  int mp_rank = 0;
  int dp_rank = 0;
  int64_t partition_numel = 0;  // elements of exp_avg (padding included)
  int64_t padding = 0;          // padding elements inside the partition (computed from the layout)
  int64_t saved_padding =
      0;  // ZeRO-1/2: group_paddings[g] as saved (BF16_Optimizer: total on last rank)
  const Value* step =
      nullptr;         // base optimizer state `step` (int or 0-dim tensor); nullptr if none
  int step_file = -1;  // file holding `step`
};

// ZeRO-1/2: one optimizer param group's flat buffer. ZeRO-3: one sub-group.
struct FlatGroup {
  int index = 0;
  int param_group = 0;
  bool expert = false;               // AutoEP experts: partitioned over the expert-DP group
  int partition_count = 0;           // W: topology.dp, or topology.edp() for expert groups
  std::vector<int> params;           // indices into CheckpointIndex::params, in flat order
  std::vector<FlatGroupRank> ranks;  // index mp_rank * dp + dp_rank
  // The step every rank agrees on (OpenCheckpoint checks it): ranks[0].step.
  const Value* step() const { return ranks.empty() ? nullptr : ranks[0].step; }
};

// One torch optimizer param group. Its partition_count and per-rank padding are on its flat
// groups (ZeRO-1/2: exactly one, with the same index).
struct ParamGroup {
  int index = 0;
  const Value* hyperparameters = nullptr;  // base optimizer param_groups[index] of the rank-0 shard
  std::vector<int> flat_groups;            // its flat groups / sub-groups
  bool expert = false;
};

// A parameter outside the optimizer (requires_grad = False), from frozen_param_shapes/_fragments.
struct FrozenParam {
  struct Piece {
    int mp_rank = 0;
    int dp_rank = 0;
    int64_t offset = 0;  // first element in the flattened parameter
    TensorLocation location;
  };
  std::string name;
  Shape shape;
  // Stage 2: one piece (the whole tensor). Stage 3: each rank's partition, padding skipped.
  std::vector<Piece> pieces;
};

// One ds_autoep_layers entry (§4.4), as saved by global rank 0 (ep_rank etc. are rank 0's).
struct AutoEpLayer {
  int moe_layer_id = 0;
  std::string module_path;
  int num_experts = 0;
  int num_local_experts = 0;
  int ep_size = 0;
  std::string expert_key_prefix;  // fused params are <prefix>.w1, .w2, .w3
  std::string checkpoint_format;  // "per_expert_files" (ZeRO 0/1/2) or "zero3_partitioned"
  std::optional<int> checkpoint_format_version;
  std::string ep_group_name;
  int ep_rank = 0;
  int expert_data_parallel_rank = 0;
  int expert_data_parallel_world_size = 0;
  int global_expert_start = 0;
  int global_expert_end = 0;
  const Value* raw = nullptr;
};

// universal_checkpoint_info (§5.2): the merge rules for TP slices, typed where ucp uses them.
struct UniversalCheckpointInfo {
  const Value* raw = nullptr;  // nullptr when the model file has no such key
  std::optional<double> version;
  std::vector<std::string> tp_replicated_patterns;
  std::vector<std::string> average_patterns;
  std::vector<std::string> row_parallel_patterns;
  std::vector<std::string> vocabulary_patterns;
  std::vector<std::string> pipeline_replicated_patterns;
  std::vector<std::string> two_sub_params_cat_dim0_patterns;
  std::vector<std::string> expert_parameter_patterns;
  std::optional<int64_t> original_vocab_size;
  const Value* sub_params = nullptr;  // parameter_with_sub_params
  const Value* sub_param_shard_widths = nullptr;
  const Value* autotp_unsupported = nullptr;  // autotp_unsupported_parameter_patterns

  bool present() const { return raw != nullptr; }
};

// The universal_checkpoint_info of a model-states root (absent: an empty one). DataLoss naming
// `path` for malformed lists. The Value pointers point into `model_root`.
absl::StatusOr<UniversalCheckpointInfo> ParseUniversalCheckpointInfo(const Value& model_root,
                                                                     absl::string_view path);

struct CheckpointFile {
  std::string path;
  std::string basename;
  formats::deepspeed::FileName name;
  std::shared_ptr<const TorchFile> torch;  // the parsed file (directory + pickle only)

  const Value& root() const { return torch->root(); }
};

struct OpenOptions {
  std::string tag;  // tag folder to open instead of the one `latest` names
  formats::torch::TorchReadOptions read;
};

// The index. OpenCheckpoint establishes every invariant documented on the fields; treat it as
// read-only. Value pointers stay valid as long as the index (it owns the TorchFiles).
struct CheckpointIndex {
  formats::deepspeed::CheckpointDir dir;
  // dp = optimizer shards per MP rank (dp_world_size), tp * pp = mp_world_size, ep = AutoEP
  // autoep_size or native MoE ep_size (1 without), use_data_before_expert_parallelism from
  // ds_config.
  ucp::Topology topology;
  ZeroKind kind;
  std::vector<CheckpointFile> files;  // sorted by base name
  // File indices. optim_files: [mp_rank * dp_size + dp_rank]. model_files: [mp_rank] (ZeRO-1/2) or
  // [mp_rank * dp + dp_rank] (ZeRO-3). expert_files: layer_*_expert_* files, sorted by
  // (layer, expert, mp_rank).
  std::vector<int> optim_files;
  std::vector<int> model_files;
  std::vector<int> expert_files;
  // ZeRO-0 AutoEP: expp_rank_<e>_mp_rank_00_optim_states.pt, indexed by EP rank e.
  std::vector<int> expert_optim_files;

  std::vector<ParamGroup> param_groups;
  std::vector<FlatGroup> flat_groups;
  std::vector<Parameter> params;  // flat-group order, param_shapes order inside each
  std::vector<FrozenParam> frozen_params;
  std::vector<std::pair<std::string, std::string>> shared_params;  // alias → stored name
  std::vector<std::string> buffer_names;
  std::vector<AutoEpLayer> autoep_layers;
  std::vector<int>
      native_moe_num_experts;  // native MoE: the model file's num_experts, per MoE layer
  UniversalCheckpointInfo universal_checkpoint_info;
  absl::flat_hash_map<std::string, int> param_by_name;

  // ZeRO-0 (no shards, optim_files empty): the model file of mp_rank.
  const CheckpointFile& optim_file(int dp_rank, int mp_rank = 0) const;
  // The model-states file of an MP rank (ZeRO-3: of that MP rank's DP rank `dp_rank`).
  const CheckpointFile& model_file(int mp_rank = 0, int dp_rank = 0) const;
  // The (dp 0, mp 0) shard's optimizer_state_dict: loss scaler, clip_grad, param_groups, ...
  // ZeRO-0: the model file's `optimizer` (a torch optimizer state_dict), as is
  // base_optimizer_state().
  const Value& optimizer_state_dict() const;
  // The torch optimizer state_dict inside it: base_optimizer_state (ZeRO-1/2, BF16_Optimizer) or
  // optimizer_state_dict.optimizer_state_dict (ZeRO-3).
  const Value& base_optimizer_state() const;
  const Parameter* FindParam(absl::string_view name) const;
};

// Opens `dir`: a save root (the tag comes from options.tag or `latest`) or a tag folder.
// Errors name the file and key:
//   NotFound            no checkpoint, a missing rank file (named), a missing tag
//   FailedPrecondition  files that disagree: world sizes, stages, param sets, steps, versions
//   DataLoss            corrupt or hostile files (truncated zip, wrong kinds, fragments that do not
//                       tile their parameter or run outside their partition)
//   Unimplemented       a layout listed in the header comment
absl::StatusOr<CheckpointIndex> OpenCheckpoint(const std::string& dir,
                                               const OpenOptions& options = {});

}  // namespace ucp::converters::deepspeed
