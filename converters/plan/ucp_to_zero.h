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
#include "formats/torch/pickle_value.h"
#include "ucp/topology.h"

namespace ucp::converters::plan {

// What the ZeRO sink writes: the topology to save at, the stage, the tag.
struct ZeroTarget {
  // dp, ep (AutoEP autoep_size; native MoE: the source's, fixed by the model) and
  // use_data_before_expert_parallelism (§7.1); tp, pp, sp 1. Checked with Topology::Validate.
  store::Topology topology;
  int zero_stage = -1;  // -1 keeps the source's; 1 <-> 2 and 0 -> 1|2 changes (stage_change.h)
  std::string tag;      // target tag folder name; empty: global_step<global_steps>
  // Written as ds_config into every file; null keeps the source's. Must outlive the plan's use.
  const formats::torch::Value* ds_config = nullptr;
};

// Plan::files are the tag folder's files (paths relative to it). InvalidArgument for an
// infeasible target (a topology Validate refuses, ep > 1 without AutoEP layers or not dividing an
// expert count, a stage change CheckStageChange refuses), DataLoss for inconsistent input.
absl::StatusOr<Plan> PlanUcpToZero12(const Zero12Input& input, const ZeroTarget& target);

}  // namespace ucp::converters::plan
