// Internal to the ZeRO → UCP planner: the per-parameter state files of a ZeRO-1/2 dense parameter,
// its TP slices (one per MP rank, deepspeed-formats.md §5.1, §5.2, §6.3) merged as MergeRules
// decided. Concatenations become CopyOps from the slices' fragments along the TpLayout runs;
// replicated slices are read and checked equal; averaged ones are read, averaged in the planner
// and copied from an in-memory PlanSource (docs/ucp.md "Tensor parallelism").
#pragma once

#include "absl/status/statusor.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/plan/merge_rules.h"
#include "converters/plan/plan.h"
#include "formats/torch/pickle_value.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::plan::internal_plan {

// The dict form of the parameter's files (dtype and requires_grad are set per state), with the
// SubparamShape object built in `arena` for sub-parameter patterns.
store::ParamStateSpec DictSpec(const ParamKeys& keys, formats::torch::ValueArena& arena);

// zero/<param>/<state>.pt. Averages append their computed bytes to plan->sources. Errors name the
// parameter: FailedPrecondition (replicated slices that differ, mixed dtypes), DataLoss (fragments
// that do not tile a slice), Unimplemented (averaging states that are not f32/f64).
absl::StatusOr<PlanFile> MergedStateFile(const deepspeed::CheckpointIndex& index, const deepspeed::Parameter& p,
                                         deepspeed::StateKind state, store::ParamStateSpec spec, const ParamKeys& keys,
                                         formats::torch::ValueArena& arena, Plan* plan);

}  // namespace ucp::converters::plan::internal_plan
