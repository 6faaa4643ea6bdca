// Internal to the ZeRO → UCP planner: the per-parameter state files of a ZeRO-1/2 dense parameter,
// its TP slices (one per MP rank, deepspeed-formats.md §5.1, §5.2, §6.3) merged as MergeRules
// decided. Concatenations become CopyOps from the slices' fragments along the TpLayout runs;
// replicated slices are read and checked equal; averaged ones are read, averaged in the planner
// and copied from an in-memory PlanSource (docs/ucp.md "Tensor parallelism").
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/plan/merge_rules.h"
#include "converters/plan/plan.h"
#include "formats/torch/pickle_value.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::plan::internal_plan {

// The dict form of the parameter's files (dtype and requires_grad are set per state), with the
// SubparamShape object built in `arena` for sub-parameter patterns.
ucp::ParamStateSpec DictSpec(const ParamKeys& keys, formats::torch::ValueArena& arena);

// One contiguous piece of a TP run (ucp/tp_layout.h) in the checkpoint's files: `bytes` bytes at
// `file_offset` of index file `file`, landing at element `merged_offset` of the merged tensor.
struct TpRunPiece {
  int file = -1;
  uint64_t file_offset = 0;
  uint64_t bytes = 0;
  int64_t merged_offset = 0;
};
// The pieces of the slice's fragments that `run` moves, in merged order (elem: the state's
// element size). Used by the UCP writer (CopyOps) and the ZeRO Source (byte runs) alike.
std::vector<TpRunPiece> TpRunPieces(const deepspeed::Parameter& p, deepspeed::StateKind state,
                                    const ucp::TpRun& run, uint64_t elem);
// An averaged parameter's merged `state`: sum(slices) / tp exactly as DeepSpeed's merge_tp_slices
// computes it in the state's dtype (f32 or f64; Unimplemented otherwise). Reads the slices.
absl::StatusOr<std::vector<std::byte>> MeanOfTpSlices(const deepspeed::CheckpointIndex& index,
                                                      const deepspeed::Parameter& p,
                                                      deepspeed::StateKind state, DType dtype);

// The dtype and requires_grad of `state` over the fragments of p's first `num_slices` slices
// (FailedPrecondition naming `path` when they mix dtypes); an empty parameter gets the index's
// master / state dtype, requires_grad for fp32 only, as DeepSpeed's flat partitions.
absl::Status StateDtype(const deepspeed::CheckpointIndex& index, const deepspeed::Parameter& p,
                        deepspeed::StateKind state, int num_slices, const std::string& path,
                        DType* dtype, bool* requires_grad);

// zero/<param>/<state>.pt. Averages append their computed bytes to plan->sources. Errors name the
// parameter: FailedPrecondition (replicated slices that differ, mixed dtypes), DataLoss (fragments
// that do not tile a slice), Unimplemented (averaging states that are not f32/f64).
absl::StatusOr<PlanFile> MergedStateFile(const deepspeed::CheckpointIndex& index,
                                         const deepspeed::Parameter& p, deepspeed::StateKind state,
                                         ucp::ParamStateSpec spec, const ParamKeys& keys,
                                         formats::torch::ValueArena& arena, Plan* plan);

}  // namespace ucp::converters::plan::internal_plan
