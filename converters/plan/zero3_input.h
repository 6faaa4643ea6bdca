// Zero3Input: what the ZeRO-3 reshard planner (ucp_to_zero3.h) reads, from either kind of input
// (docs/reshard.md "ZeRO-3"):
//   * a ZeRO-3 tag folder (a CheckpointIndex): each parameter's merged tensor is its fragments in
//     merged order; templates are rank 0's model-states file and optimizer_state_dict;
//   * the UCP folder ds_to_universal writes for it (§5): zero/<param>/<state>.pt payloads, the
//     copied (AutoEP: rewritten) zero_pp_rank_* model-states files, zero/optimizer_state.pt.
// Only metadata is read: every tensor is described by byte runs of the opened files.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/plan/plan.h"
#include "formats/base/dtype.h"
#include "formats/base/shape.h"
#include "formats/torch/torch_file.h"
#include "ucp/source.h"

namespace ucp::converters::plan {

// Bytes of one tensor, row-major, as runs of Zero3Input::files.
struct Zero3Runs {
  DType dtype = DType::kF32;
  std::vector<store::ByteRun> runs;
};

struct Zero3Param {
  std::string name;
  Shape shape;           // param_shapes entry (AutoEP experts: EP-local [E_local, ...] of the source)
  int sub_group = 0;     // index into Zero3Input::sub_groups
  bool expert = false;   // AutoEP fused expert weight: merged tensor is [num_experts, ...]
  int num_experts = 0;
  std::array<Zero3Runs, deepspeed::kNumStates> states;  // fp32, exp_avg, exp_avg_sq of the merged tensor
};

struct Zero3SubGroup {
  bool expert = false;      // partitioned over the expert-data-parallel group
  std::vector<int> params;  // indices into Zero3Input::params, flat order
};

// A frozen parameter (§4.3): its whole tensor.
struct Zero3Frozen {
  std::string name;
  Shape shape;
  Zero3Runs bytes;
};

struct Zero3Input {
  std::string origin;  // the folder read, for messages
  // files[i] is plan source i; storage_runs locates every storage of their trees.
  std::vector<std::shared_ptr<const formats::torch::TorchFile>> files;
  absl::flat_hash_map<const formats::torch::StorageRef*, store::ByteRun> storage_runs;
  std::vector<Zero3Param> params;
  std::vector<Zero3SubGroup> sub_groups;
  std::vector<Zero3Frozen> frozen;
  int source_dp = 1;
  int source_ep = 1;
  // Templates (owned by `files`): the source rank 0 model-states tree and its ZeRO-3
  // optimizer_state_dict (zero_stage, loss_scaler, ..., optimizer_state_dict{state, param_groups}).
  const formats::torch::Value* model_root = nullptr;
  const formats::torch::Value* optimizer_state_dict = nullptr;
  // shared_params of rank 0 (DeepSpeed computes it on global rank 0 only; other ranks save {}).
  const formats::torch::Value* shared_params = nullptr;
};

// From an opened ZeRO-3 index. FailedPrecondition unless zero_stage == 3 and tp == pp == 1.
absl::StatusOr<Zero3Input> Zero3InputFromIndex(const deepspeed::CheckpointIndex& index);

// From a ZeRO-3 UCP folder. NotFound for a missing state file or model file (named),
// FailedPrecondition for a ZeRO-1/2 UCP, DataLoss for malformed files.
absl::StatusOr<Zero3Input> Zero3InputFromUcp(const std::string& ucp_dir);

}  // namespace ucp::converters::plan
