// Zero12Input: what the ZeRO-1/2 reshard planner (ucp_to_zero.h) reads, from either
//   * a ZeRO-1/2 / BF16_Optimizer tag folder (a CheckpointIndex): each parameter's merged tensor is
//     its fragments in merged order, step and hyper-parameters from the rank-0 shard, or
//   * the UCP folder ds_to_universal writes for it (§5): zero/<param>/<state>.pt, step.pt, the
//     copied mp_rank_00 model-states file and zero/optimizer_state.pt.
// Only metadata is read: tensors are byte runs of the opened files (docs/reshard.md).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/plan/zero3_input.h"  // Zero3Runs
#include "formats/base/shape.h"
#include "formats/torch/torch_file.h"

namespace ucp::converters::plan {

struct Zero12Param {
  std::string name;
  Shape shape;          // param_shapes entry of the source (AutoEP experts: EP-local [E_local, ...])
  int group = 0;        // optimizer param group
  bool expert = false;  // AutoEP fused expert weight: merged tensor is [num_experts, ...]
  int num_experts = 0;
  std::array<Zero3Runs, deepspeed::kNumStates> states;  // fp32, exp_avg, exp_avg_sq, merged
};

struct Zero12Group {
  bool expert = false;            // partitioned over the expert-DP group ('moe': True)
  std::vector<int> params;        // indices into Zero12Input::params, flat order
  const formats::torch::Value* step = nullptr;             // int or 0-dim tensor; nullptr: none
  const formats::torch::Value* hyperparameters = nullptr;  // base optimizer param_groups[g]
};

struct Zero12Input {
  std::string origin;  // the folder read, for messages
  std::vector<std::shared_ptr<const formats::torch::TorchFile>> files;  // plan sources, in order
  absl::flat_hash_map<const formats::torch::StorageRef*, store::ByteRun> storage_runs;
  std::vector<Zero12Param> params;
  std::vector<Zero12Group> groups;
  int source_dp = 1;
  int source_ep = 1;
  int zero_stage = 1;
  bool bf16_optimizer = false;  // BF16_Optimizer wrapper (§3.6)
  // Frozen parameters the source records (the index's; a UCP's frozen_param_shapes), for PlanInfo:
  // the same count `ucp convert` reports for the checkpoint.
  int frozen_params = 0;
  // Native DeepSpeed MoE (§2.5; docs/reshard.md "Native MoE"): the model file's num_experts per MoE
  // layer (empty otherwise). Its expert params are Zero12Param::expert with num_experts = ep_size
  // (the UCP stacks the EP ranks' copies of one local-id name). From a ZeRO folder also the
  // source's layer_*_expert_* files as (basename, index into `files`), copied unchanged.
  std::vector<int> native_moe_num_experts;
  // ZeRO-0 source (zero_stage 0, from a ZeRO folder only): its tied aliases (alias → stored name),
  // which a ZeRO-0 model file does not record (shared_params is None there).
  std::vector<std::pair<std::string, std::string>> zero0_shared_params;
  std::vector<std::pair<std::string, int>> native_expert_files;
  // Templates (owned by `files`): the mp_rank_00 model-states tree and a dict with the
  // optimizer's scalar keys (loss_scaler, dynamic_loss_scale, overflow, clip_grad, zero_stage,
  // ds_version, universal_checkpoint_info): the rank-0 optimizer_state_dict or
  // zero/optimizer_state.pt.
  const formats::torch::Value* model_root = nullptr;
  const formats::torch::Value* optimizer_template = nullptr;
};

// From an opened ZeRO-0/1/2 index. FailedPrecondition unless zero_stage is 0, 1 or 2; Unimplemented
// for tp/pp > 1. A ZeRO-0 input can only be written at ZeRO-1/2 (stage_change.h).
absl::StatusOr<Zero12Input> Zero12InputFromIndex(const deepspeed::CheckpointIndex& index);

// From a ZeRO-1/2 UCP folder. NotFound for a missing file (named), FailedPrecondition for a
// ZeRO-3 UCP or one converted from ZeRO-0 (no param_shapes), DataLoss for malformed files.
absl::StatusOr<Zero12Input> Zero12InputFromUcp(const std::string& ucp_dir);

}  // namespace ucp::converters::plan
