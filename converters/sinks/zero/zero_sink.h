// The ZeRO sink: the tag folder DeepSpeed's save_checkpoint writes at a target topology and ZeRO
// stage, planned from a ZeroSinkInput (a ZeRO folder, a UCP folder or memory; zero_sink_input.h).
// `ucp reshard` is input → PlanZeroSink → execute (docs/reshard.md); the runtime's save will be
// memory → PlanZeroSink → execute.
//
// One entry point for every stage and wrapper. The target is checked once (CheckZeroTarget:
// topology, stage change, expert counts, sub-group cut, plan size) before anything is planned,
// then the files are laid out with ShardLayout (ucp/shard_layout.h) at the target Topology:
//   ZeRO-1/2, BF16_Optimizer (zero12_writer.cc, zero12_experts.cc): mp_rank_00_model_states.pt,
//     [bf16_]zero_pp_rank_<r>_mp_rank_00_optim_states.pt per DP rank, AutoEP / native MoE
//     layer_<l>_expert_<e> files;
//   ZeRO-3 (zero3_writer.cc): zero_pp_rank_<r>_mp_rank_00_model_states.pt and
//     [bf16_]zero_pp_rank_<r>_mp_rank_00_optim_states.pt per DP rank.
// Pure: metadata in, Plan out (file paths relative to the tag folder); sources are the input's.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "converters/plan/plan.h"
#include "converters/sinks/zero/zero_sink_input.h"
#include "formats/torch/pickle_value.h"
#include "ucp/topology.h"

namespace ucp::converters::sinks {

// Largest plan the sink makes: output files, and bytes of plan metadata (pickles, frames, copy
// operations) estimated from the target before any per-rank structure exists. A target beyond
// them is refused as absurd (e.g. --dp 1000000 on a small model: ~17 KiB of metadata per rank).
inline constexpr uint64_t kMaxSinkFiles = uint64_t{1} << 20;
inline constexpr uint64_t kMaxSinkMetadataBytes = uint64_t{2} << 30;

// What the ZeRO sink writes: the topology to save at, the stage, the tag.
struct ZeroTarget {
  // dp, ep (AutoEP autoep_size; native MoE: the source's, fixed by the model) and
  // use_data_before_expert_parallelism (§7.1); tp, pp, sp 1.
  ucp::Topology topology;
  int zero_stage = -1;  // -1 keeps the source's; 1 <-> 2 and 0 -> 1|2 changes (stage_change.h)
  std::string tag;      // target tag folder name; empty: global_step<global_steps>
  // Written as ds_config into every file; null keeps the source's. Must outlive the plan's use.
  const Value* ds_config = nullptr;
  // Largest plan metadata accepted (`ucp reshard`: the larger of this and --memory-limit).
  uint64_t max_metadata_bytes = kMaxSinkMetadataBytes;
};

// OK when `input` can be written at `target`: the stage the sink writes (1, 2 or 3). Otherwise a
// usage error (InvalidArgument, IsUsageError) naming the numbers: a topology Topology::Validate
// refuses, tp / pp / sp > 1, ep > 1 without expert parameters or not dividing an expert count, a
// native MoE ep change, a stage change CheckStageChange refuses, a plan over kMaxSinkFiles files or
// max_metadata_bytes; Unimplemented for a ZeRO-3 sub-group cut DeepSpeed would change, or a ZeRO-3
// target from memory. Costs O(parameters + groups), whatever the target's dp. Ranks that hold only
// padding of a group are not refused: DeepSpeed runs them (stage_1_and_2.py get_flat_partition:
// "This condition can fire when we have small parameteters and many ranks"; ZeRO-3, §4.1).
absl::StatusOr<int> CheckZeroTarget(const ZeroSinkInput& input, const ZeroTarget& target);

// CheckZeroTarget, then the plan. Plan::sources are the input's sources (its files by path, with
// no bytes: the caller serves them, e.g. RunPlan's `files`; the others with PlanSource::memory),
// then a zeros source and any cast sources. DataLoss for inconsistent input (runs shorter than
// their tensors, template keys missing).
absl::StatusOr<plan::Plan> PlanZeroSink(const ZeroSinkInput& input, const ZeroTarget& target);

// A tensor-parallel checkpoint (one input per TP rank: ZeroSinkInputsFromIndex / FromUcp) at a
// target of the same tp: each TP rank's slices are partitioned over the target dp like a whole
// model (DeepSpeed's ZeRO shards over the DP group of each TP lane), written as
// mp_rank_<t>_model_states.pt and zero_pp_rank_<d>_mp_rank_<t>_optim_states.pt. One input at
// tp 1 is PlanZeroSink(input, target). Unimplemented for a tp change.
absl::StatusOr<plan::Plan> PlanZeroSink(absl::Span<const ZeroSinkInput> tp_ranks,
                                        const ZeroTarget& target);

}  // namespace ucp::converters::sinks
