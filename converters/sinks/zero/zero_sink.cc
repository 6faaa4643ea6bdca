// PlanZeroSink: the target checks every input and stage share, then the stage's writer.
#include "converters/sinks/zero/zero_sink.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "converters/sinks/zero/stage_change.h"
#include "converters/sinks/zero/zero_writers.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/file_names.h"
#include "formats/deepspeed/value_access.h"
#include "ucp/shard_layout.h"

namespace ucp::converters::sinks {

namespace keys = formats::deepspeed::keys;
namespace ids = formats::deepspeed;
using formats::torch::ValueKind;
using plan::Piece;

namespace internal_sink {

const Value* WrittenDsConfig(const ZeroSinkInput& in, const ZeroTarget& target) {
  if (target.ds_config != nullptr) return target.ds_config;
  return in.model_root != nullptr ? in.model_root->Get(keys::kDsConfig) : nullptr;
}

std::string OptimizerFileName(const ZeroSinkInput& in, const ZeroTarget& target, int rank) {
  bool bf16 = in.bf16_optimizer;
  if (const Value* c = WrittenDsConfig(in, target); c != nullptr && c->is_dict()) {
    const Value* b = c->Get("bf16") != nullptr ? c->Get("bf16") : c->Get("bfloat16");
    const Value* en = b != nullptr && b->is_dict() ? b->Get("enabled") : nullptr;
    bf16 = bf16 || (en != nullptr && en->is(ValueKind::kBool) && en->bool_value());
  }
  return formats::deepspeed::OptimStatesFileName(bf16 ? "bf16_" : "", rank, in.mp_rank);
}

plan::Plan NewSinkPlan(const ZeroSinkInput& in, const ZeroTarget& target, int stage,
                       const char* wrapper) {
  plan::Plan plan;
  plan::PlanInfo& info = plan.info;
  info.pipeline = stage == 3 ? "reshard_zero3" : "reshard_zero12";
  info.input = in.origin;
  info.wrapper = wrapper;
  info.zero_stage = stage;
  info.dp_size = target.topology.dp;
  info.ep_size = target.topology.ep;
  info.param_groups = static_cast<int>(in.groups.size());
  info.params = static_cast<int>(in.params.size());
  for (const SinkParam& p : in.params) info.expert_params += p.expert ? 1 : 0;
  info.frozen_params = in.frozen_params;
  if (info.frozen_params < 0) {
    const Value* shapes =
        in.model_root != nullptr ? in.model_root->Get(keys::kFrozenParamShapes) : nullptr;
    info.frozen_params = shapes != nullptr && shapes->is_dict()
                             ? static_cast<int>(shapes->entries().size())
                             : static_cast<int>(in.frozen.size());
  }
  if (!in.params.empty()) {
    info.master_dtype = std::string(DTypeName(in.params[0].states[0].dtype));
    info.state_dtype = std::string(DTypeName(in.params[0].states[1].dtype));
  }
  // Files are named by their path (the output guard and RunPlan open them); the rest carry bytes.
  for (size_t i = 0; i < in.sources.size(); ++i) {
    const bool file = static_cast<int>(i) < in.num_file_sources;
    plan.sources.push_back(plan::PlanSource{in.sources[i]->name(), in.sources[i]->Size(),
                                            file ? nullptr : in.sources[i]});
  }
  return plan;
}

int64_t TargetNumel(const ZeroSinkInput& in, const SinkParam& p, const ZeroTarget& target) {
  const int64_t numel = p.shape.NumElements().value_or(0);
  return p.expert ? numel * in.topology.ep / target.topology.ep : numel;
}

ucp::ShardLayout TargetLayout(const ZeroSinkInput& in, const ZeroTarget& target, int g,
                              ucp::PartitionKind kind) {
  ucp::GroupSpec spec{kind, {}, in.groups[g].expert};
  for (int pi : in.groups[g].params) spec.numels.push_back(TargetNumel(in, in.params[pi], target));
  return ucp::ShardLayout(std::move(spec), target.topology);
}

absl::StatusOr<std::vector<Piece>> PartitionPieces(const ZeroSinkInput& in,
                                                   const ucp::ShardLayout& layout, int g, int state,
                                                   int rank, DType* dtype) {
  const SinkGroup& group = in.groups[g];
  for (size_t i = 0; i < group.params.size(); ++i) {
    const SinkParam& p = in.params[group.params[i]];
    if (i > 0 && p.states[state].dtype != *dtype) {
      return absl::FailedPreconditionError(
          absl::StrCat(in.origin, ": group ", g, " mixes ", DTypeName(*dtype), " and ",
                       DTypeName(p.states[state].dtype), " at '", p.name, "'"));
    }
    *dtype = p.states[state].dtype;
  }
  const uint64_t elem = DTypeSize(*dtype);
  std::vector<Piece> pieces;
  int64_t at = 0;
  for (const ucp::ShardPiece& f : layout.Shard(rank).pieces) {
    const SinkParam& p = in.params[group.params[f.param]];
    if (f.partition_offset > at)
      pieces.push_back(Piece{-1, 0, static_cast<uint64_t>(f.partition_offset - at) * elem});
    UCP_RETURN_IF_ERROR(plan::SliceRuns(
        p.states[state], static_cast<uint64_t>(f.merged_offset) * elem,
        static_cast<uint64_t>(f.numel) * elem, in.origin, absl::StrCat("'", p.name, "'"), &pieces));
    at = f.partition_offset + f.numel;
  }
  if (layout.partition_size() > at) {
    pieces.push_back(Piece{-1, 0, static_cast<uint64_t>(layout.partition_size() - at) * elem});
  }
  return pieces;
}

}  // namespace internal_sink

namespace {

// DeepSpeed cuts each ZeRO-3 param group into sub-groups by accumulating partition numels up to
// zero_optimization.sub_group_size (deepspeed-formats.md §4.2). Partition numels depend on dp, so
// the source's cut holds at the target only if recomputing it gives the same cut.
absl::Status CheckSubGroupCut(const ZeroSinkInput& in, const ZeroTarget& t) {
  double limit = 1e12;
  const Value* config = internal_sink::WrittenDsConfig(in, t);
  if (config != nullptr && config->is_dict()) {
    const Value* zo = config->Get(keys::kZeroOptimization);
    const Value* size = zo != nullptr && zo->is_dict() ? zo->Get("sub_group_size") : nullptr;
    if (size != nullptr && !size->is_none()) {
      UCP_ASSIGN_OR_RETURN(limit,
                           ids::AsNumber(size, "ds_config.zero_optimization.sub_group_size"));
    }
  }
  const std::string what =
      absl::StrCat(in.origin, ": optimizer_state_dict.optimizer_state_dict.param_groups");
  UCP_ASSIGN_OR_RETURN(const Value* inner,
                       ids::Require(*in.optimizer_template, keys::kOptimizerStateDict, what));
  UCP_ASSIGN_OR_RETURN(const Value* pgs_v, ids::Require(*inner, keys::kParamGroups, what));
  UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> pgs, ids::AsSequence(pgs_v, what));
  for (const Value* g : pgs) {
    UCP_ASSIGN_OR_RETURN(const Value* gd, ids::AsDict(g, what));
    UCP_ASSIGN_OR_RETURN(const Value* params_v, ids::Require(*gd, keys::kParams, what));
    UCP_ASSIGN_OR_RETURN(std::vector<int64_t> subs, ids::AsIntList(params_v, what));
    std::vector<int64_t> parts;  // target partition numel of each param, in order
    std::vector<size_t> old_cut;
    for (int64_t s : subs) {
      if (s < 0 || s >= static_cast<int64_t>(in.groups.size())) {
        return absl::DataLossError(absl::StrCat(what, ": sub-group ", s, " out of range"));
      }
      const SinkGroup& sg = in.groups[s];
      for (int p : sg.params) {
        const int world = sg.expert ? t.topology.edp() : t.topology.dp;
        parts.push_back(
            ucp::PerParamShard(internal_sink::TargetNumel(in, in.params[p], t), world, 0)
                .partition);
      }
      old_cut.push_back(parts.size());
    }
    int64_t total = 0;
    for (int64_t x : parts) total += x;
    std::vector<size_t> new_cut;
    int64_t acc = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
      acc += parts[i];
      if (static_cast<double>(acc) >= limit || i + 1 == parts.size()) {
        new_cut.push_back(i + 1);
        acc = 0;
      }
    }
    if (limit >= static_cast<double>(total)) new_cut = {parts.size()};
    if (!parts.empty() && new_cut != old_cut) {
      return absl::UnimplementedError(absl::StrCat(
          in.origin, ": with sub_group_size ", limit, " DeepSpeed cuts a param group into ",
          new_cut.size(), " sub-groups at dp ", t.topology.dp, ", the source has ", old_cut.size(),
          "; re-cutting sub-groups is not supported"));
    }
  }
  return absl::OkStatus();
}

// Expert parallelism at the target: AutoEP layers may change ep (dividing every expert count),
// native MoE fixes it in the model.
absl::Status CheckExperts(const ZeroSinkInput& in, const ZeroTarget& t) {
  const int ep = t.topology.ep;
  bool experts = false;
  for (const SinkParam& p : in.params) experts = experts || p.expert;
  if (!in.native_moe_num_experts.empty() && ep != in.topology.ep) {
    return absl::InvalidArgumentError(absl::StrCat(
        in.origin, ": native DeepSpeed MoE with ep_size ", in.topology.ep, ", target ", ep,
        ": the model fixes its ep_size (MoE(ep_size=...)) and DeepSpeed cannot load it at "
        "another"));
  }
  if (!experts && ep != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        in.origin, ": autoep_size ", ep, " requested, but the checkpoint has no AutoEP layers"));
  }
  UCP_RETURN_IF_ERROR(t.topology.Validate());
  for (const SinkParam& p : in.params) {
    if (p.expert && p.num_experts % ep != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", p.name, "': ", p.num_experts, " experts are not divisible by autoep_size ", ep));
    }
  }
  return absl::OkStatus();
}

// The plan's metadata grows with its files (each a pickled tree, a frame, zip headers) and with
// the parameter pieces the files hold (slice mappings, copy operations, ZeRO-3 param_shapes per
// rank). Measured on the fixtures (`ucp reshard --dry-run` RSS at dp 1000 and 10000): about 17 KiB
// per rank for their small models, nearly all of it per file; these constants bound it from above.
constexpr uint64_t kPlanBytesPerFile = 24 << 10;
constexpr uint64_t kPlanBytesPerPiece = 256;

absl::Status CheckPlanSize(const ZeroSinkInput& in, const ZeroTarget& t, int stage) {
  const uint64_t dp = static_cast<uint64_t>(t.topology.dp);
  const uint64_t params = in.params.size(), groups = in.groups.size();
  uint64_t expert_files = 0;  // ZeRO-1/2 layer_*_expert_* files: one per expert of each fused layer
  for (const SinkParam& p : in.params)
    expert_files += p.expert ? static_cast<uint64_t>(p.num_experts) : 0;
  const uint64_t files = dp + (stage == 3 ? dp : 1 + expert_files);
  // ZeRO-1/2: a group's pieces are its params plus at most one split per rank boundary; ZeRO-3:
  // every rank holds a piece of every parameter.
  const uint64_t pieces = stage == 3 ? dp * params : params + groups * dp;
  const uint64_t bytes = files * kPlanBytesPerFile + pieces * kPlanBytesPerPiece;
  if (files <= kMaxSinkFiles && bytes <= t.max_metadata_bytes) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "target dp ", dp, ": ", files, " files holding ", pieces,
      " parameter pieces would need about ", bytes >> 20,
      " MiB of plan metadata before a byte is copied (limits: ", kMaxSinkFiles, " files, ",
      t.max_metadata_bytes >> 20, " MiB; --memory-limit raises the second)"));
}

absl::StatusOr<int> CheckTarget(const ZeroSinkInput& in, const ZeroTarget& t) {
  const ucp::Topology& topo = t.topology;
  if (topo.tp != 1 || topo.pp != 1 || topo.sp != 1) {
    return absl::InvalidArgumentError(absl::StrCat("target ", topo.ToString(), ", sp ", topo.sp,
                                                   ": the ZeRO sink writes tp = pp = sp = 1"));
  }
  const int stage = t.zero_stage >= 0 ? t.zero_stage : in.zero_stage;
  if (in.kind == SinkInputKind::kMemory && (stage == 3) != (in.zero_stage == 3)) {
    return absl::UnimplementedError(
        absl::StrCat(in.origin,
                     ": a memory checkpoint is written at ZeRO-3 exactly when it is built with "
                     "ZeRO-3's layout (MemoryCheckpoint::zero3); target ZeRO-",
                     stage));
  }
  // The runtime's stage-0 save (memory, ZeRO-0 → ZeRO-0) is written as is; a file source is not
  // rewritten at ZeRO-0 (CheckStageChange says why).
  if (!(in.kind == SinkInputKind::kMemory && stage == 0 && in.zero_stage == 0))
    UCP_RETURN_IF_ERROR(CheckStageChange(in.origin, in.zero_stage, t.zero_stage));
  UCP_RETURN_IF_ERROR(CheckExperts(in, t));
  UCP_RETURN_IF_ERROR(CheckPlanSize(in, t, stage));
  if (stage == 3) UCP_RETURN_IF_ERROR(CheckSubGroupCut(in, t));
  return stage;
}

}  // namespace

absl::StatusOr<int> CheckZeroTarget(const ZeroSinkInput& input, const ZeroTarget& target) {
  absl::StatusOr<int> stage = CheckTarget(input, target);
  if (!stage.ok() && absl::IsInvalidArgument(stage.status())) return AsUsageError(stage.status());
  return stage;
}

absl::StatusOr<plan::Plan> PlanZeroSink(const ZeroSinkInput& input, const ZeroTarget& target) {
  UCP_ASSIGN_OR_RETURN(int stage, CheckZeroTarget(input, target));
  if (stage == 3) return internal_sink::PlanZero3(input, target);
  if (stage == 0) return internal_sink::PlanZero0(input, target);
  return internal_sink::PlanZero12(input, target, stage);
}

absl::StatusOr<plan::Plan> PlanZeroSink(absl::Span<const ZeroSinkInput> tp_ranks,
                                        const ZeroTarget& target) {
  if (tp_ranks.empty()) return absl::InternalError("PlanZeroSink: no input");
  const int tp = static_cast<int>(tp_ranks.size());
  if (tp == 1 && target.topology.tp == 1) return PlanZeroSink(tp_ranks[0], target);
  if (target.topology.tp != tp) {
    return absl::UnimplementedError(
        absl::StrCat(tp_ranks[0].origin, ": tp ", tp, " -> ", target.topology.tp,
                     ": a ZeRO folder is resharded at its own tp; ",
                     target.topology.tp == 1 ? "reshard its UCP (ucp convert) to write tp 1"
                                             : "only tp 1 is merged"));
  }
  ZeroTarget lane = target;  // each TP rank's files: partitioned over its DP group alone
  lane.topology.tp = 1;
  plan::Plan out;
  for (int t = 0; t < tp; ++t) {
    if (tp_ranks[t].mp_rank != t) return absl::InternalError("PlanZeroSink: TP ranks out of order");
    UCP_ASSIGN_OR_RETURN(plan::Plan p, PlanZeroSink(tp_ranks[t], lane));
    if (t == 0) {
      out = std::move(p);
    } else {
      UCP_RETURN_IF_ERROR(plan::AppendPlan(std::move(p), tp_ranks[0].sources.size(), &out));
    }
  }
  out.info.tp_size = tp;
  UCP_RETURN_IF_ERROR(plan::ValidatePlan(out));
  return out;
}

}  // namespace ucp::converters::sinks
