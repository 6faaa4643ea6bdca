// PlanZero3Reshard: the ZeRO-3 checkpoint DeepSpeed writes after loading a UCP at another data-
// parallel size / autoep_size and saving at once (deepspeed-formats.md §4, §6.6, §7.4;
// docs/reshard.md "ZeRO-3"), planned from a Zero3Input (a ZeRO-3 folder or its UCP):
//   zero_pp_rank_{r}_mp_rank_00_model_states.pt   source rank 0's tree with dp_world_size,
//       frozen_param_fragments (rank r's padded partition), shared_params (rank 0 only),
//       param_shapes (AutoEP: EP-local at the target ep) and ds_autoep_layers for rank r;
//   [bf16_]zero_pp_rank_{r}_mp_rank_00_optim_states.pt   {optimizer_state_dict, ds_config, ds_version}
//       (bf16_ when the ds_config written has bf16 enabled, as DeepSpeed names them)
//       with partition_count, ds_zero_partition_groups, fp32_flat_groups and state[s].exp_avg /
//       exp_avg_sq: per sub-group, each param's P = ceil(n/W) slice for rank r, zero padded.
// Unlike DeepSpeed's universal load, every param group keeps its own hyper-parameters (name,
// weight_decay) and every sub-group its own step tensor (see docs/reshard.md).
#pragma once

#include <optional>

#include "absl/status/statusor.h"
#include "converters/plan/plan.h"
#include "converters/plan/zero3_input.h"
#include "formats/torch/pickle_value.h"

namespace ucp::converters::plan {

struct Zero3Target {
  int dp = 1;   // target data-parallel world size
  int ep = 0;   // target autoep_size; 0 keeps the source's
  // use_data_before_expert_parallelism at the target (§7.1); unset: the ds_config's (the target's
  // when given, else the source's), false when absent.
  std::optional<bool> use_data_before_expert_parallelism = std::nullopt;
  // Written as ds_config into every file; null keeps the source's. Must outlive the plan's use.
  const formats::torch::Value* ds_config = nullptr;
};

// Plan::sources are Zero3Input::files in order, then (when any padding exists) one in-memory
// source of zeros. Errors: InvalidArgument for a bad target (dp < 1, dp not a multiple of ep,
// num_experts not divisible by ep, ep > 1 without AutoEP layers); DataLoss for inconsistent
// templates (state / sub-group counts, runs shorter than their tensors).
absl::StatusOr<Plan> PlanZero3Reshard(const Zero3Input& input, const Zero3Target& target);

}  // namespace ucp::converters::plan
