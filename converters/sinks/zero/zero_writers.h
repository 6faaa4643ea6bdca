// The ZeRO sink's writers (zero_sink.h) and what they share. Not an API: include only from
// converters/sinks/zero.
//   zero12_writer.cc, zero12_experts.cc  ZeRO-1/2 and BF16_Optimizer targets (PlanZero12)
//   zero3_writer.cc                      ZeRO-3 targets (PlanZero3)
// Both run after CheckZeroTarget, so the target is feasible and its topology valid.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "converters/plan/plan.h"
#include "converters/plan/storage_frames.h"
#include "converters/sinks/zero/zero_sink.h"
#include "converters/sinks/zero/zero_sink_input.h"
#include "ucp/shard_layout.h"

namespace ucp::converters::sinks::internal_sink {

absl::StatusOr<plan::Plan> PlanZero12(const ZeroSinkInput& in, const ZeroTarget& target, int stage);
absl::StatusOr<plan::Plan> PlanZero3(const ZeroSinkInput& in, const ZeroTarget& target);
// ZeRO-0 (zero0_writer.cc): the runtime's fp32 stage-0 save, from a whole-tensor input.
absl::StatusOr<plan::Plan> PlanZero0(const ZeroSinkInput& in, const ZeroTarget& target);

// AutoEP expert files (ZeRO-0/1/2, zero12_experts.cc): layer_{L}_expert_{E}_mp_rank_00 with
// expert E's rows of the fused masters, in the module's dtype (ModuleDtype; cast lazily by a
// CastingSource added to `plan`). No files without ds_autoep_layers.
absl::Status AutoEpExpertFiles(const ZeroSinkInput& in, formats::torch::ValueArena& arena,
                               plan::StorageFrames& frames, plan::Plan* plan);
// The dtype of the input module's tensors (the lp weights), `fallback` when it has none.
DType ModuleDtype(const ZeroSinkInput& in, DType fallback);
// An expert file's tensor: master elements of p's fp32 state from `byte_offset`, shaped `shape`.
absl::StatusOr<const Value*> ExpertRow(const ZeroSinkInput& in, formats::torch::ValueArena& arena,
                                       plan::StorageFrames& frames, const SinkParam& p,
                                       uint64_t byte_offset, const Shape& shape, plan::Plan* plan);

// The ds_config the target's files carry: the target's, else the source model file's (or null).
const Value* WrittenDsConfig(const ZeroSinkInput& in, const ZeroTarget& target);

// [bf16_]zero_pp_rank_<rank>_mp_rank_00_optim_states.pt. DeepSpeed names optimizer files bf16_*
// whenever the writing run has bf16 enabled, at every stage and with every wrapper (engine
// _get_zero_ckpt_name: bf16_mode = bfloat16_enabled(); config "bf16", else the old "bfloat16"
// key), and BF16_Optimizer always; model files never get the prefix (§1.2).
std::string OptimizerFileName(const ZeroSinkInput& in, const ZeroTarget& target, int rank);

// Plan::info and the input's sources (files by path, the rest with their bytes), common to both
// writers.
plan::Plan NewSinkPlan(const ZeroSinkInput& in, const ZeroTarget& target, int stage,
                       const char* wrapper);

// The element count of parameter p at the target: EP-local at the target's ep for experts.
int64_t TargetNumel(const ZeroSinkInput& in, const SinkParam& p, const ZeroTarget& target);

// Group g of the input cut at the target (kFlat: ZeRO-1/2; kPerParam: ZeRO-3).
ucp::ShardLayout TargetLayout(const ZeroSinkInput& in, const ZeroTarget& target, int g,
                              ucp::PartitionKind kind);

// DP rank `rank`'s partition of group g for state `state` (0 fp32, 1 exp_avg, 2 exp_avg_sq): the
// input's runs of its pieces, zeros in the padding (DeepSpeed's load starts from a zero buffer,
// §6.4). Sets *dtype to the state's dtype; FailedPrecondition when the group mixes dtypes.
absl::StatusOr<std::vector<plan::Piece>> PartitionPieces(const ZeroSinkInput& in,
                                                         const ucp::ShardLayout& layout, int g,
                                                         int state, int rank, DType* dtype);

}  // namespace ucp::converters::sinks::internal_sink
