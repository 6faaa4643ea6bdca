// Planners of the ZeRO sink (`ucp reshard`, docs/reshard.md): from a UCP folder or a ZeRO tag
// folder, the tag folder DeepSpeed would save after loading that checkpoint at another topology.
//   ZeRO-1/2, BF16_Optimizer, AutoEP ZeRO-2: PlanUcpToZero12 over a Zero12Input (zero12_input.h).
//   ZeRO-3, AutoEP ZeRO-3: PlanZero3Reshard over a Zero3Input (zero3_reshard.h, zero3_input.h).
// Both are pure: metadata in, Plan out (files relative to the tag folder); the pipeline
// (converters/pipelines/reshard.h) executes it.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "converters/plan/plan.h"
#include "converters/plan/zero12_input.h"

namespace ucp::converters::plan {

struct ReshardTarget {
  int dp = 1;            // target data-parallel world size
  int autoep_size = 0;   // target AutoEP autoep_size; 0 keeps the source's
  int zero_stage = -1;   // -1 keeps the source's; 1 <-> 2 changes allowed (stage_change.h)
  std::string tag;       // target tag folder name; empty: global_step<global_steps>
  // ds_config use_data_before_expert_parallelism of the target (§7.1).
  bool use_data_before_expert_parallelism = false;
};

// Plan::files are the tag folder's files (paths relative to it). InvalidArgument for an
// infeasible target (dp < 1, autoep_size not dividing dp or an expert count, autoep_size without
// AutoEP layers, a stage change CheckStageChange refuses), DataLoss for inconsistent input.
absl::StatusOr<Plan> PlanUcpToZero12(const Zero12Input& input, const ReshardTarget& target);

}  // namespace ucp::converters::plan
