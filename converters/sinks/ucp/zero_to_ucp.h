// PlanZeroToUcp: the plan that turns a DeepSpeed ZeRO checkpoint (a CheckpointIndex) into the
// Universal Checkpoint folder DeepSpeed's own ds_to_universal.py writes (deepspeed-formats.md §5,
// §6.2-§6.5, §7), file for file:
//   * zero/<param>/{fp32,exp_avg,exp_avg_sq}.pt: one new storage per file whose payload is the
//     parameter's fragments, copied in order from the shards (dict form for ZeRO-1/2, raw 1-D
//     tensor for ZeRO-3, the AutoEP expert dict for fused expert weights); ZeRO-1/2 with tp > 1:
//     the TP slices merged per universal_checkpoint_info (merged_state_file.h);
//   * zero/<param>/step.pt (ZeRO-1/2): the param group's step value, re-saved;
//   * zero/optimizer_state.pt: the rank-0 optimizer state as §5.3 describes;
//   * the model-states files: byte copies, or re-saved with AutoEP keys (§5.4).
// Pure: reads only the index (its parsed pickles and zip directories), never a tensor payload,
// except the slices of TP-replicated (checked equal) and TP-averaged (averaged here) parameters.
#pragma once

#include "absl/status/statusor.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/plan/plan.h"

namespace ucp::converters::sinks {

// ds_to_universal.py's flags that change the output.
struct ZeroToUcpOptions {
  bool strict = true;  // false: --no_strict (unused universal_checkpoint_info patterns allowed)
  bool inject_missing_state =
      false;  // --inject_missing_state (ZeRO-1/2 without universal_checkpoint_info)
};

// plan::Plan::sources are the index's files, in index order (source i = index.files[i]).
// Errors (each names the file or parameter):
//   FailedPrecondition  ZeRO-1/2 without universal_checkpoint_info (and no inject), AutoTP
//                       patterns marked unsupported, unused patterns in strict mode, non-fp32
//                       AutoEP experts in ZeRO-1/2, fragments that disagree on dtype
//   InvalidArgument     a parameter name that would escape the output folder, a bad pattern
//   Unimplemented       ZeRO-3 with tensor parallelism (tp > 1), averaging non-f32/f64 TP slices
//   DataLoss            fragments that do not tile their parameter
absl::StatusOr<plan::Plan> PlanZeroToUcp(const deepspeed::CheckpointIndex& index,
                                         const ZeroToUcpOptions& options = {});

}  // namespace ucp::converters::sinks
