#include "converters/plan/zero3_reshard.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "converters/deepspeed/deepspeed_keys.h"
#include "converters/deepspeed/value_access.h"
#include "converters/plan/storage_frames.h"
#include "converters/plan/tree_edit.h"
#include "formats/base/status.h"
#include "ucp/torch_frame.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::plan {
namespace {

namespace keys = deepspeed::keys;
namespace ids = deepspeed::internal_ds;
using formats::torch::StorageRef;
using formats::torch::TensorRef;
using formats::torch::Value;
using formats::torch::ValueArena;
using formats::torch::ValueKind;

// Rank r's place in the target topology.
struct RankPlace {
  int rank = 0;
  int ep_rank = 0;
  int edp_rank = 0;
};

class Planner {
 public:
  Planner(const Zero3Input& in, const Zero3Target& t, int ep, bool data_first)
      : in_(in), t_(t), ep_(ep), edp_(t.dp / ep), data_first_(data_first) {}

  absl::StatusOr<Plan> Run();

 private:
  RankPlace Place(int r) const {
    if (data_first_) return RankPlace{r, r / edp_, r % edp_};
    return RankPlace{r, r % ep_, r / ep_};
  }
  std::vector<int> ExpertGroupRanks(int ep_rank) const {
    std::vector<int> out;
    for (int i = 0; i < edp_; ++i) {
      out.push_back(data_first_ ? ep_rank * edp_ + i : ep_rank + i * ep_);
    }
    return out;
  }
  absl::Status SliceRuns(const Zero3Runs& runs, uint64_t begin, uint64_t length, absl::string_view what,
                         std::vector<Piece>* out) const {
    return plan::SliceRuns(runs, begin, length, in_.origin, what, out);
  }
  // A new 1-D storage + tensor of `numel` elements filled by `pieces`.
  const Value* NewTensor(DType dtype, int64_t numel, bool requires_grad, std::vector<Piece> pieces) {
    return frames_.NewTensor(dtype, numel, numel, requires_grad, std::move(pieces));
  }
  // Rank r's partition of each param of sub-group s for one state (concatenated, padded).
  absl::StatusOr<const Value*> SubGroupPartition(int s, int state, const RankPlace& place, bool requires_grad);
  absl::StatusOr<const Value*> ModelRoot(const RankPlace& place);
  absl::StatusOr<const Value*> OptimizerRoot(const RankPlace& place);
  absl::StatusOr<const Value*> AutoepLayers(const Value* layers, const RankPlace& place, absl::string_view what);
  absl::StatusOr<const Value*> ParamShapes(const Value* shapes, absl::string_view what);
  int64_t LocalNumel(const Zero3Param& p) const;

  const Zero3Input& in_;
  const Zero3Target& t_;
  const int ep_, edp_;
  const bool data_first_;  // use_data_before_expert_parallelism
  ValueArena arena_;
  StorageFrames frames_{&arena_, &in_.storage_runs, &in_.origin};
};




int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t Planner::LocalNumel(const Zero3Param& p) const {
  const int64_t numel = p.shape.NumElements().value_or(0);
  return p.expert ? numel * in_.source_ep / ep_ : numel;
}

absl::StatusOr<const Value*> Planner::SubGroupPartition(int s, int state, const RankPlace& place,
                                                        bool requires_grad) {
  const Zero3SubGroup& g = in_.sub_groups[s];
  const int64_t world = g.expert ? edp_ : t_.dp;
  const int64_t prank = g.expert ? place.edp_rank : place.rank;
  std::vector<Piece> pieces;
  int64_t total = 0;
  DType dtype = DType::kF32;
  for (size_t i = 0; i < g.params.size(); ++i) {
    const Zero3Param& p = in_.params[g.params[i]];
    const Zero3Runs& runs = p.states[state];
    if (i > 0 && runs.dtype != dtype) {
      return absl::FailedPreconditionError(absl::StrCat(in_.origin, ": sub-group ", s, " mixes ", DTypeName(dtype),
                                                        " and ", DTypeName(runs.dtype), " at '", p.name, "'"));
    }
    dtype = runs.dtype;
    const uint64_t elem = DTypeSize(dtype);
    const int64_t n = LocalNumel(p);
    const int64_t part = CeilDiv(n, world);
    const int64_t valid = std::max<int64_t>(0, std::min(part, n - prank * part));
    const int64_t base = p.expert ? static_cast<int64_t>(place.ep_rank) * n : 0;
    if (valid > 0) {
      UCP_RETURN_IF_ERROR(SliceRuns(runs, static_cast<uint64_t>(base + prank * part) * elem,
                                    static_cast<uint64_t>(valid) * elem, absl::StrCat("'", p.name, "'"), &pieces));
    }
    if (part > valid) pieces.push_back(Piece{-1, 0, static_cast<uint64_t>(part - valid) * elem});
    total += part;
  }
  return NewTensor(dtype, total, requires_grad, std::move(pieces));
}

absl::StatusOr<const Value*> Planner::AutoepLayers(const Value* layers, const RankPlace& place,
                                                   absl::string_view what) {
  return RewriteAutoepLayers(arena_, layers, ep_, edp_, place.ep_rank, place.edp_rank, what);
}

// param_shapes with the expert entries at the target ep (same pickled form as the source's).
absl::StatusOr<const Value*> Planner::ParamShapes(const Value* shapes, absl::string_view what) {
  if (ep_ == in_.source_ep) return shapes;
  absl::flat_hash_map<std::string, ExpertShape> experts;
  for (const Zero3Param& p : in_.params) {
    if (p.expert) experts[p.name] = ExpertShape{p.num_experts, p.shape};
  }
  return RewriteExpertParamShapes(arena_, shapes, experts, ep_, what);
}

absl::StatusOr<const Value*> Planner::ModelRoot(const RankPlace& place) {
  const std::string what = absl::StrCat(in_.origin, ": model states");
  UCP_ASSIGN_OR_RETURN(const Value* src, ids::AsDict(in_.model_root, what));
  Value* root = CopyDict(arena_, *src);
  if (const Value* v = src->Get(keys::kParamShapes); v != nullptr && !v->is_none()) {
    UCP_ASSIGN_OR_RETURN(const Value* shapes, ParamShapes(v, absl::StrCat(what, ": ", keys::kParamShapes)));
    SetOrReplace(arena_, root, keys::kParamShapes, shapes);
  }
  if (const Value* v = src->Get(keys::kFrozenParamFragments); v != nullptr && !v->is_none()) {
    Value* frags = v->is(ValueKind::kOrderedDict) ? arena_.OrderedDict() : arena_.Dict();
    for (const Zero3Frozen& f : in_.frozen) {
      const uint64_t elem = DTypeSize(f.bytes.dtype);
      const int64_t n = f.shape.NumElements().value_or(0);
      const int64_t part = CeilDiv(n, t_.dp);
      const int64_t valid = std::max<int64_t>(0, std::min(part, n - place.rank * part));
      std::vector<Piece> pieces;
      if (valid > 0) {
        UCP_RETURN_IF_ERROR(SliceRuns(f.bytes, static_cast<uint64_t>(place.rank * part) * elem,
                                      static_cast<uint64_t>(valid) * elem,
                                      absl::StrCat("frozen '", f.name, "'"), &pieces));
      }
      if (part > valid) pieces.push_back(Piece{-1, 0, static_cast<uint64_t>(part - valid) * elem});
      arena_.SetItem(frags, f.name, NewTensor(f.bytes.dtype, part, false, std::move(pieces)));
    }
    SetOrReplace(arena_, root, keys::kFrozenParamFragments, frags);
  }
  if (src->Get(keys::kSharedParams) != nullptr && place.rank != 0) {
    SetOrReplace(arena_, root, keys::kSharedParams, arena_.Dict());
  }
  if (src->Get(keys::kDpWorldSize) != nullptr) SetOrReplace(arena_, root, keys::kDpWorldSize, arena_.Int(t_.dp));
  if (t_.ds_config != nullptr) SetOrReplace(arena_, root, keys::kDsConfig, t_.ds_config);
  for (absl::string_view key : {keys::kDsAutoepLayers, keys::kAutoepLayersLegacy}) {
    const Value* layers = src->Get(key);
    if (layers == nullptr || layers->is_none()) continue;
    UCP_ASSIGN_OR_RETURN(const Value* nl, AutoepLayers(layers, place, absl::StrCat(what, ": ", key)));
    SetOrReplace(arena_, root, key, nl);
  }
  if (const Value* info = src->Get(keys::kUniversalCheckpointInfo); info != nullptr && info->is_dict()) {
    if (const Value* layers = info->Get(keys::kDsAutoepLayers); layers != nullptr && !layers->is_none()) {
      Value* ni = CopyDict(arena_, *info);
      UCP_ASSIGN_OR_RETURN(const Value* nl, AutoepLayers(layers, place,
                                                         absl::StrCat(what, ": universal_checkpoint_info")));
      SetOrReplace(arena_, ni, keys::kDsAutoepLayers, nl);
      SetOrReplace(arena_, root, keys::kUniversalCheckpointInfo, ni);
    }
  }
  return root;
}

absl::StatusOr<const Value*> Planner::OptimizerRoot(const RankPlace& place) {
  const std::string what = absl::StrCat(in_.origin, ": optimizer_state_dict");
  UCP_ASSIGN_OR_RETURN(const Value* src, ids::AsDict(in_.optimizer_state_dict, what));
  const int num_sub = static_cast<int>(in_.sub_groups.size());
  Value* osd = arena_.Dict();
  for (const auto& [k, v] : src->entries()) {
    if (IsKey(k, keys::kParamGroups)) continue;  // the UCP's top-level copy (§5.3)
    const Value* value = v;
    if (IsKey(k, keys::kPartitionCount)) {
      value = arena_.Int(t_.dp);
    } else if (IsKey(k, keys::kDsZeroPartitionGroups)) {
      UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> items, ids::AsSequence(v, what));
      if (static_cast<int>(items.size()) != num_sub) {
        return absl::DataLossError(absl::StrCat(what, ": ", items.size(), " ds_zero_partition_groups for ",
                                                num_sub, " sub-groups"));
      }
      Value* list = arena_.List();
      for (int s = 0; s < num_sub; ++s) {
        UCP_ASSIGN_OR_RETURN(const Value* d, ids::AsDict(items[s], what));
        Value* e = CopyDict(arena_, *d);
        const bool expert = in_.sub_groups[s].expert;
        std::vector<const Value*> ranks;
        if (expert) {
          for (int r : ExpertGroupRanks(place.ep_rank)) ranks.push_back(arena_.Int(r));
        } else {
          for (int r = 0; r < t_.dp; ++r) ranks.push_back(arena_.Int(r));
        }
        SetOrReplace(arena_, e, keys::kPartitionCount, arena_.Int(expert ? edp_ : t_.dp));
        SetOrReplace(arena_, e, keys::kPartitionRank, arena_.Int(expert ? place.edp_rank : place.rank));
        SetOrReplace(arena_, e, keys::kPartitionRanks, arena_.List(ranks));
        if (expert && ep_ != in_.source_ep) {
          SetOrReplace(arena_, e, keys::kGroupNames, arena_.List({arena_.Str(absl::StrCat("ep_size_", ep_))}));
        }
        ValueArena::Append(list, e);
      }
      value = list;
    } else if (IsKey(k, keys::kFp32FlatGroups)) {
      Value* list = arena_.List();
      for (int s = 0; s < num_sub; ++s) {
        UCP_ASSIGN_OR_RETURN(const Value* t, SubGroupPartition(s, 0, place, /*requires_grad=*/true));
        ValueArena::Append(list, t);
      }
      value = list;
    } else if (IsKey(k, keys::kOptimizerStateDict)) {
      const std::string iwhat = absl::StrCat(what, ".optimizer_state_dict");
      UCP_ASSIGN_OR_RETURN(const Value* inner, ids::AsDict(v, iwhat));
      Value* ni = CopyDict(arena_, *inner);
      UCP_ASSIGN_OR_RETURN(const Value* state_v, ids::Require(*inner, keys::kState, iwhat));
      UCP_ASSIGN_OR_RETURN(const Value* state, ids::AsDict(state_v, iwhat));
      if (static_cast<int>(state->entries().size()) != num_sub) {
        return absl::DataLossError(absl::StrCat(iwhat, ".state has ", state->entries().size(), " entries for ",
                                                num_sub, " sub-groups"));
      }
      Value* ns = CopyDict(arena_, *state);
      for (int s = 0; s < num_sub; ++s) {
        const Value* sv = ids::GetByInt(*state, s);
        if (sv == nullptr) return absl::DataLossError(absl::StrCat(iwhat, ".state: no entry ", s));
        UCP_ASSIGN_OR_RETURN(const Value* sd, ids::AsDict(sv, absl::StrCat(iwhat, ".state[", s, "]")));
        Value* nsd = CopyDict(arena_, *sd);
        UCP_ASSIGN_OR_RETURN(const Value* avg, SubGroupPartition(s, 1, place, false));
        UCP_ASSIGN_OR_RETURN(const Value* avg_sq, SubGroupPartition(s, 2, place, false));
        SetOrReplace(arena_, nsd, keys::kExpAvg, avg);
        SetOrReplace(arena_, nsd, keys::kExpAvgSq, avg_sq);
        for (size_t i = 0; i < state->entries().size(); ++i) {
          const Value* key = state->entries()[i].first;
          if (key->is(ValueKind::kInt) && key->int_value() == s) ValueArena::ReplaceValue(ns, i, nsd);
        }
      }
      SetOrReplace(arena_, ni, keys::kState, ns);
      if (ep_ != in_.source_ep) {  // the expert group is named after its EP group
        UCP_ASSIGN_OR_RETURN(const Value* pg_v, ids::Require(*inner, keys::kParamGroups, iwhat));
        UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> pgs, ids::AsSequence(pg_v, iwhat));
        Value* npg = arena_.List();
        const std::string old_name = absl::StrCat("ep_size_", in_.source_ep);
        for (const Value* g : pgs) {
          UCP_ASSIGN_OR_RETURN(const Value* gd, ids::AsDict(g, iwhat));
          const Value* name = gd->Get("name");
          if (name != nullptr && name->is(ValueKind::kStr) && name->str() == old_name) {
            Value* ng = CopyDict(arena_, *gd);
            SetOrReplace(arena_, ng, "name", arena_.Str(absl::StrCat("ep_size_", ep_)));
            g = ng;
          }
          ValueArena::Append(npg, g);
        }
        SetOrReplace(arena_, ni, keys::kParamGroups, npg);
      }
      value = ni;
    }
    ValueArena::SetItem(osd, k, value);
  }
  Value* root = arena_.Dict();
  arena_.SetItem(root, keys::kOptimizerStateDict, osd);
  const Value* config = t_.ds_config != nullptr ? t_.ds_config : in_.model_root->Get(keys::kDsConfig);
  if (config != nullptr) arena_.SetItem(root, keys::kDsConfig, config);
  if (const Value* version = in_.model_root->Get(keys::kDsVersion); version != nullptr) {
    arena_.SetItem(root, keys::kDsVersion, version);
  }
  return root;
}

absl::StatusOr<Plan> Planner::Run() {
  Plan plan;
  plan.info.pipeline = "reshard_zero3";
  plan.info.input = in_.origin;
  plan.info.wrapper = "DeepSpeedZeroOptimizer_Stage3";
  plan.info.zero_stage = 3;
  plan.info.dp_size = t_.dp;
  plan.info.ep_size = ep_;
  plan.info.params = static_cast<int>(in_.params.size());
  plan.info.frozen_params = static_cast<int>(in_.frozen.size());
  for (const Zero3Param& p : in_.params) plan.info.expert_params += p.expert ? 1 : 0;
  for (const auto& f : in_.files) plan.sources.push_back(PlanSource{f->name(), f->zip().source().Size()});
  frames_.ReserveZeros(&plan);
  // DeepSpeed names optimizer files bf16_zero_pp_rank_* whenever the writing run has bf16 enabled, at
  // every stage and with every wrapper (engine _get_zero_ckpt_name: bf16_mode = bfloat16_enabled();
  // config "bf16", else the old "bfloat16" key); ZeRO-3 model files never get the prefix (§1.2).
  bool bf16 = false;
  if (const Value* c = t_.ds_config != nullptr ? t_.ds_config : in_.model_root->Get(keys::kDsConfig);
      c != nullptr && c->is_dict()) {
    const Value* b = c->Get("bf16") != nullptr ? c->Get("bf16") : c->Get("bfloat16");
    const Value* en = b != nullptr && b->is_dict() ? b->Get("enabled") : nullptr;
    bf16 = en != nullptr && en->is(ValueKind::kBool) && en->bool_value();
  }
  for (int r = 0; r < t_.dp; ++r) {
    const RankPlace place = Place(r);
    UCP_ASSIGN_OR_RETURN(const Value* model, ModelRoot(place));
    UCP_ASSIGN_OR_RETURN(const Value* optim, OptimizerRoot(place));
    UCP_ASSIGN_OR_RETURN(PlanFile mf, frames_.Frame(absl::StrCat("zero_pp_rank_", r, "_mp_rank_00_model_states.pt"),
                                            FileRole::kModelRewrite, *model));
    UCP_ASSIGN_OR_RETURN(PlanFile of, frames_.Frame(absl::StrCat(bf16 ? "bf16_" : "", "zero_pp_rank_", r,
                                                         "_mp_rank_00_optim_states.pt"),
                                            FileRole::kOptimizerState, *optim));
    plan.files.push_back(std::move(mf));
    plan.files.push_back(std::move(of));
  }
  frames_.FinishZeros(&plan);
  UCP_RETURN_IF_ERROR(ValidatePlan(plan));
  return plan;
}

// DeepSpeed cuts each param group into sub-groups by accumulating partition numels up to
// zero_optimization.sub_group_size (deepspeed-formats.md §4.2). Partition numels depend on dp, so
// the source's split holds at the target only if recomputing it gives the same cut.
absl::Status CheckSubGroupSplit(const Zero3Input& in, const Zero3Target& t, int ep) {
  double limit = 1e12;
  const Value* config = t.ds_config != nullptr ? t.ds_config : in.model_root->Get(keys::kDsConfig);
  if (config != nullptr && config->is_dict()) {
    const Value* zo = config->Get(keys::kZeroOptimization);
    const Value* size = zo != nullptr && zo->is_dict() ? zo->Get("sub_group_size") : nullptr;
    if (size != nullptr && !size->is_none()) {
      UCP_ASSIGN_OR_RETURN(limit, ids::AsNumber(size, "ds_config.zero_optimization.sub_group_size"));
    }
  }
  const std::string what = absl::StrCat(in.origin, ": optimizer_state_dict.optimizer_state_dict.param_groups");
  UCP_ASSIGN_OR_RETURN(const Value* inner, ids::Require(*in.optimizer_state_dict, keys::kOptimizerStateDict, what));
  UCP_ASSIGN_OR_RETURN(const Value* pgs_v, ids::Require(*inner, keys::kParamGroups, what));
  UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> pgs, ids::AsSequence(pgs_v, what));
  const int dp = t.dp, edp = t.dp / ep;
  for (const Value* g : pgs) {
    UCP_ASSIGN_OR_RETURN(const Value* gd, ids::AsDict(g, what));
    UCP_ASSIGN_OR_RETURN(const Value* params_v, ids::Require(*gd, keys::kParams, what));
    UCP_ASSIGN_OR_RETURN(std::vector<int64_t> subs, ids::AsIntList(params_v, what));
    std::vector<int64_t> parts;  // target partition numel of each param, in order
    std::vector<size_t> old_cut;
    for (int64_t s : subs) {
      if (s < 0 || s >= static_cast<int64_t>(in.sub_groups.size())) {
        return absl::DataLossError(absl::StrCat(what, ": sub-group ", s, " out of range"));
      }
      const Zero3SubGroup& sg = in.sub_groups[s];
      for (int p : sg.params) {
        const Zero3Param& param = in.params[p];
        const int64_t n = param.shape.NumElements().value_or(0) * (param.expert ? in.source_ep : 1) /
                          (param.expert ? ep : 1);
        parts.push_back(CeilDiv(n, sg.expert ? edp : dp));
      }
      old_cut.push_back(parts.size());
    }
    int64_t total = 0;
    for (int64_t x : parts) total += x;
    std::vector<size_t> new_cut;
    if (limit >= static_cast<double>(total)) {
      new_cut.push_back(parts.size());
    } else {
      int64_t acc = 0;
      for (size_t i = 0; i < parts.size(); ++i) {
        acc += parts[i];
        if (static_cast<double>(acc) >= limit || i + 1 == parts.size()) {
          new_cut.push_back(i + 1);
          acc = 0;
        }
      }
    }
    if (!parts.empty() && new_cut != old_cut) {
      return absl::UnimplementedError(absl::StrCat(
          in.origin, ": with sub_group_size ", limit, " DeepSpeed cuts a param group into ", new_cut.size(),
          " sub-groups at dp ", dp, ", the source has ", old_cut.size(), "; re-cutting sub-groups is not supported"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Plan> PlanZero3Reshard(const Zero3Input& input, const Zero3Target& target) {
  bool autoep = false;
  for (const Zero3Param& p : input.params) autoep = autoep || p.expert;
  const int ep = target.ep > 0 ? target.ep : input.source_ep;
  if (target.dp < 1 || ep < 1) {
    return absl::InvalidArgumentError(absl::StrCat("target dp ", target.dp, ", ep ", ep, ": both must be >= 1"));
  }
  if (!autoep && ep != 1) {
    return absl::InvalidArgumentError(absl::StrCat(input.origin, ": autoep_size ", ep,
                                                   " requested, but the checkpoint has no AutoEP layers"));
  }
  if (target.dp % ep != 0) {
    return absl::InvalidArgumentError(absl::StrCat("target dp ", target.dp, " is not a multiple of autoep_size ", ep));
  }
  for (const Zero3Param& p : input.params) {
    if (p.expert && p.num_experts % ep != 0) {
      return absl::InvalidArgumentError(absl::StrCat("'", p.name, "': ", p.num_experts,
                                                     " experts are not divisible by autoep_size ", ep));
    }
  }
  UCP_RETURN_IF_ERROR(CheckSubGroupSplit(input, target, ep));
  bool data_first = false;
  if (target.use_data_before_expert_parallelism.has_value()) {
    data_first = *target.use_data_before_expert_parallelism;
  } else {
    const Value* config = target.ds_config != nullptr ? target.ds_config : input.model_root->Get(keys::kDsConfig);
    const Value* v = config != nullptr && config->is_dict() ? config->Get(keys::kUseDataBeforeExpertParallelism)
                                                            : nullptr;
    if (v != nullptr && !v->is_none()) {
      UCP_ASSIGN_OR_RETURN(data_first, ids::AsBool(v, absl::StrCat("ds_config.",
                                                                   keys::kUseDataBeforeExpertParallelism)));
    }
  }
  Planner planner(input, target, ep, data_first);
  return planner.Run();
}

}  // namespace ucp::converters::plan
