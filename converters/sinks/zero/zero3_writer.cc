// The ZeRO-3 writer of the ZeRO sink (docs/reshard.md "ZeRO-3"; deepspeed-formats.md §4, §6.6,
// §7.4): the files DeepSpeed writes after loading a ZeRO-3 UCP at another data-parallel size /
// autoep_size and saving at once:
//   zero_pp_rank_{r}_mp_rank_00_model_states.pt   source rank 0's tree with dp_world_size,
//       frozen_param_fragments (rank r's padded partition), shared_params (rank 0 only),
//       param_shapes (AutoEP: EP-local at the target ep) and ds_autoep_layers for rank r;
//   [bf16_]zero_pp_rank_{r}_mp_rank_00_optim_states.pt   {optimizer_state_dict, ds_config,
//   ds_version}
//       with partition_count, ds_zero_partition_groups, fp32_flat_groups and state[s].exp_avg /
//       exp_avg_sq: per sub-group, rank r's ShardLayout partition (kPerParam), zero padded.
// Unlike DeepSpeed's universal load, every param group keeps its own hyper-parameters (name,
// weight_decay) and every sub-group its own step tensor (see docs/reshard.md).
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "converters/plan/storage_frames.h"
#include "converters/plan/tree_edit.h"
#include "converters/sinks/zero/zero_writers.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/file_names.h"
#include "formats/deepspeed/value_access.h"
#include "ucp/shard_layout.h"
#include "ucp/torch_frame.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::sinks {
namespace {

namespace keys = formats::deepspeed::keys;
namespace ids = formats::deepspeed;
using formats::torch::StorageRef;
using formats::torch::TensorRef;
using formats::torch::Value;
using formats::torch::ValueArena;
using formats::torch::ValueKind;
using plan::CopyDict;
using plan::FileRole;
using plan::IsKey;
using plan::Piece;
using plan::Plan;
using plan::PlanFile;
using plan::SetOrReplace;
using plan::StorageFrames;

// Rank r's place in the target topology.
struct RankPlace {
  int rank = 0;
  int ep_rank = 0;
  int edp_rank = 0;
};

class Planner {
 public:
  Planner(const ZeroSinkInput& in, const ZeroTarget& t)
      : in_(in), t_(t), topo_(t.topology), ep_(topo_.ep), edp_(topo_.edp()) {}

  absl::StatusOr<Plan> Run();

 private:
  RankPlace Place(int r) const {
    const ucp::EpPlace p = topo_.PlaceOnEp(r);
    return RankPlace{r, p.ep_rank, p.edp_rank};
  }
  absl::Status SliceRuns(const TensorRuns& runs, uint64_t begin, uint64_t length,
                         absl::string_view what, std::vector<Piece>* out) const {
    return plan::SliceRuns(runs, begin, length, in_.origin, what, out);
  }
  // A new 1-D storage + tensor of `numel` elements filled by `pieces`.
  const Value* NewTensor(DType dtype, int64_t numel, bool requires_grad,
                         std::vector<Piece> pieces) {
    return frames_.NewTensor(dtype, numel, numel, requires_grad, std::move(pieces));
  }
  // Rank r's partition of each param of sub-group s for one state (concatenated, padded).
  absl::StatusOr<const Value*> SubGroupPartition(int s, int state, const RankPlace& place,
                                                 bool requires_grad);
  absl::StatusOr<const Value*> ModelRoot(const RankPlace& place);
  absl::StatusOr<const Value*> OptimizerRoot(const RankPlace& place);
  absl::StatusOr<const Value*> PartitionGroups(const Value* v, const RankPlace& place,
                                               absl::string_view what);
  absl::StatusOr<const Value*> InnerState(const Value* v, const RankPlace& place,
                                          absl::string_view what);
  absl::StatusOr<const Value*> AutoepLayers(const Value* layers, const RankPlace& place,
                                            absl::string_view what);
  absl::StatusOr<const Value*> ParamShapes(const Value* shapes, absl::string_view what);

  const ZeroSinkInput& in_;
  const ZeroTarget& t_;
  const ucp::Topology& topo_;
  const int ep_, edp_;
  ValueArena arena_;
  StorageFrames frames_{&arena_, &in_.storage_runs, &in_.origin};
};

absl::StatusOr<const Value*> Planner::SubGroupPartition(int s, int state, const RankPlace& place,
                                                        bool requires_grad) {
  const ucp::ShardLayout layout =
      internal_sink::TargetLayout(in_, t_, s, ucp::PartitionKind::kPerParam);
  DType dtype = DType::kF32;
  UCP_ASSIGN_OR_RETURN(std::vector<Piece> pieces,
                       internal_sink::PartitionPieces(in_, layout, s, state, place.rank, &dtype));
  return NewTensor(dtype, layout.partition_size(), requires_grad, std::move(pieces));
}

absl::StatusOr<const Value*> Planner::AutoepLayers(const Value* layers, const RankPlace& place,
                                                   absl::string_view what) {
  return plan::RewriteAutoepLayers(arena_, layers, ep_, edp_, place.ep_rank, place.edp_rank, what);
}

// param_shapes with the expert entries at the target ep (same pickled form as the source's).
absl::StatusOr<const Value*> Planner::ParamShapes(const Value* shapes, absl::string_view what) {
  if (ep_ == in_.topology.ep) return shapes;
  absl::flat_hash_map<std::string, plan::ExpertShape> experts;
  for (const SinkParam& p : in_.params) {
    if (p.expert) experts[p.name] = plan::ExpertShape{p.num_experts, p.shape};
  }
  return plan::RewriteExpertParamShapes(arena_, shapes, experts, ep_, what);
}

absl::StatusOr<const Value*> Planner::ModelRoot(const RankPlace& place) {
  const std::string what = absl::StrCat(in_.origin, ": model states");
  UCP_ASSIGN_OR_RETURN(const Value* src, ids::AsDict(in_.model_root, what));
  Value* root = CopyDict(arena_, *src);
  if (const Value* v = src->Get(keys::kParamShapes); v != nullptr && !v->is_none()) {
    UCP_ASSIGN_OR_RETURN(const Value* shapes,
                         ParamShapes(v, absl::StrCat(what, ": ", keys::kParamShapes)));
    SetOrReplace(arena_, root, keys::kParamShapes, shapes);
  }
  if (const Value* v = src->Get(keys::kFrozenParamFragments); v != nullptr && !v->is_none()) {
    Value* frags = v->is(ValueKind::kOrderedDict) ? arena_.OrderedDict() : arena_.Dict();
    for (const SinkFrozen& f : in_.frozen) {
      const uint64_t elem = DTypeSize(f.bytes.dtype);
      const ucp::PerParamPiece piece =
          ucp::PerParamShard(f.shape.NumElements().value_or(0), topo_.dp, place.rank);
      std::vector<Piece> pieces;
      if (piece.valid > 0) {
        UCP_RETURN_IF_ERROR(SliceRuns(f.bytes, static_cast<uint64_t>(piece.offset) * elem,
                                      static_cast<uint64_t>(piece.valid) * elem,
                                      absl::StrCat("frozen '", f.name, "'"), &pieces));
      }
      if (piece.partition > piece.valid) {
        pieces.push_back(Piece{-1, 0, static_cast<uint64_t>(piece.partition - piece.valid) * elem});
      }
      arena_.SetItem(frags, f.name,
                     NewTensor(f.bytes.dtype, piece.partition, false, std::move(pieces)));
    }
    SetOrReplace(arena_, root, keys::kFrozenParamFragments, frags);
  }
  if (src->Get(keys::kSharedParams) != nullptr && place.rank != 0) {
    SetOrReplace(arena_, root, keys::kSharedParams, arena_.Dict());
  }
  if (src->Get(keys::kDpWorldSize) != nullptr)
    SetOrReplace(arena_, root, keys::kDpWorldSize, arena_.Int(topo_.dp));
  if (t_.ds_config != nullptr) SetOrReplace(arena_, root, keys::kDsConfig, t_.ds_config);
  for (absl::string_view key : {keys::kDsAutoepLayers, keys::kAutoepLayersLegacy}) {
    const Value* layers = src->Get(key);
    if (layers == nullptr || layers->is_none()) continue;
    UCP_ASSIGN_OR_RETURN(const Value* nl,
                         AutoepLayers(layers, place, absl::StrCat(what, ": ", key)));
    SetOrReplace(arena_, root, key, nl);
  }
  if (const Value* info = src->Get(keys::kUniversalCheckpointInfo);
      info != nullptr && info->is_dict()) {
    if (const Value* layers = info->Get(keys::kDsAutoepLayers);
        layers != nullptr && !layers->is_none()) {
      Value* ni = CopyDict(arena_, *info);
      UCP_ASSIGN_OR_RETURN(
          const Value* nl,
          AutoepLayers(layers, place, absl::StrCat(what, ": universal_checkpoint_info")));
      SetOrReplace(arena_, ni, keys::kDsAutoepLayers, nl);
      SetOrReplace(arena_, root, keys::kUniversalCheckpointInfo, ni);
    }
  }
  return root;
}

// ds_zero_partition_groups (§4.4) at the target: each sub-group's partition count, rank and
// ranks; an expert sub-group's group name follows its EP group.
absl::StatusOr<const Value*> Planner::PartitionGroups(const Value* v, const RankPlace& place,
                                                      absl::string_view what) {
  const int num_sub = static_cast<int>(in_.groups.size());
  UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> items, ids::AsSequence(v, what));
  if (static_cast<int>(items.size()) != num_sub) {
    return absl::DataLossError(absl::StrCat(
        what, ": ", items.size(), " ds_zero_partition_groups for ", num_sub, " sub-groups"));
  }
  Value* list = arena_.List();
  for (int s = 0; s < num_sub; ++s) {
    UCP_ASSIGN_OR_RETURN(const Value* d, ids::AsDict(items[s], what));
    Value* e = CopyDict(arena_, *d);
    const bool expert = in_.groups[s].expert;
    std::vector<const Value*> ranks;
    if (expert) {
      for (int r : topo_.ExpertDpGroup(place.ep_rank)) ranks.push_back(arena_.Int(r));
    } else {
      for (int r = 0; r < topo_.dp; ++r) ranks.push_back(arena_.Int(r));
    }
    SetOrReplace(arena_, e, keys::kPartitionCount, arena_.Int(expert ? edp_ : topo_.dp));
    SetOrReplace(arena_, e, keys::kPartitionRank, arena_.Int(expert ? place.edp_rank : place.rank));
    SetOrReplace(arena_, e, keys::kPartitionRanks, arena_.List(ranks));
    if (expert && ep_ != in_.topology.ep) {
      SetOrReplace(arena_, e, keys::kGroupNames,
                   arena_.List({arena_.Str(absl::StrCat("ep_size_", ep_))}));
    }
    ValueArena::Append(list, e);
  }
  return list;
}

// The torch optimizer's state_dict: every sub-group's exp_avg / exp_avg_sq partition at the
// target; when ep changes, the expert param group is renamed after its EP group.
absl::StatusOr<const Value*> Planner::InnerState(const Value* v, const RankPlace& place,
                                                 absl::string_view what) {
  const int num_sub = static_cast<int>(in_.groups.size());
  UCP_ASSIGN_OR_RETURN(const Value* inner, ids::AsDict(v, what));
  Value* ni = CopyDict(arena_, *inner);
  UCP_ASSIGN_OR_RETURN(const Value* state_v, ids::Require(*inner, keys::kState, what));
  UCP_ASSIGN_OR_RETURN(const Value* state, ids::AsDict(state_v, what));
  if (static_cast<int>(state->entries().size()) != num_sub) {
    return absl::DataLossError(absl::StrCat(what, ".state has ", state->entries().size(),
                                            " entries for ", num_sub, " sub-groups"));
  }
  Value* ns = CopyDict(arena_, *state);
  for (int s = 0; s < num_sub; ++s) {
    const Value* sv = ids::GetByInt(*state, s);
    if (sv == nullptr) return absl::DataLossError(absl::StrCat(what, ".state: no entry ", s));
    UCP_ASSIGN_OR_RETURN(const Value* sd, ids::AsDict(sv, absl::StrCat(what, ".state[", s, "]")));
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
  if (ep_ == in_.topology.ep) return ni;
  UCP_ASSIGN_OR_RETURN(const Value* pg_v, ids::Require(*inner, keys::kParamGroups, what));
  UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> pgs, ids::AsSequence(pg_v, what));
  Value* npg = arena_.List();
  const std::string old_name = absl::StrCat("ep_size_", in_.topology.ep);
  for (const Value* g : pgs) {
    UCP_ASSIGN_OR_RETURN(const Value* gd, ids::AsDict(g, what));
    const Value* name = gd->Get("name");
    if (name != nullptr && name->is(ValueKind::kStr) && name->str() == old_name) {
      Value* ng = CopyDict(arena_, *gd);
      SetOrReplace(arena_, ng, "name", arena_.Str(absl::StrCat("ep_size_", ep_)));
      g = ng;
    }
    ValueArena::Append(npg, g);
  }
  SetOrReplace(arena_, ni, keys::kParamGroups, npg);
  return ni;
}

absl::StatusOr<const Value*> Planner::OptimizerRoot(const RankPlace& place) {
  const std::string what = absl::StrCat(in_.origin, ": optimizer_state_dict");
  UCP_ASSIGN_OR_RETURN(const Value* src, ids::AsDict(in_.optimizer_template, what));
  Value* osd = arena_.Dict();
  for (const auto& [k, v] : src->entries()) {
    if (IsKey(k, keys::kParamGroups)) continue;  // the UCP's top-level copy (§5.3)
    const Value* value = v;
    if (IsKey(k, keys::kPartitionCount)) {
      value = arena_.Int(topo_.dp);
    } else if (IsKey(k, keys::kDsZeroPartitionGroups)) {
      UCP_ASSIGN_OR_RETURN(value, PartitionGroups(v, place, what));
    } else if (IsKey(k, keys::kFp32FlatGroups)) {
      Value* list = arena_.List();
      for (int s = 0; s < static_cast<int>(in_.groups.size()); ++s) {
        UCP_ASSIGN_OR_RETURN(const Value* t,
                             SubGroupPartition(s, 0, place, /*requires_grad=*/true));
        ValueArena::Append(list, t);
      }
      value = list;
    } else if (IsKey(k, keys::kOptimizerStateDict)) {
      UCP_ASSIGN_OR_RETURN(value,
                           InnerState(v, place, absl::StrCat(what, ".optimizer_state_dict")));
    }
    ValueArena::SetItem(osd, k, value);
  }
  Value* root = arena_.Dict();
  arena_.SetItem(root, keys::kOptimizerStateDict, osd);
  if (const Value* config = internal_sink::WrittenDsConfig(in_, t_); config != nullptr) {
    arena_.SetItem(root, keys::kDsConfig, config);
  }
  if (const Value* version = in_.model_root->Get(keys::kDsVersion); version != nullptr) {
    arena_.SetItem(root, keys::kDsVersion, version);
  }
  return root;
}

absl::StatusOr<Plan> Planner::Run() {
  Plan plan = internal_sink::NewSinkPlan(in_, t_, 3, "DeepSpeedZeroOptimizer_Stage3");
  frames_.ReserveZeros(&plan);
  for (int r = 0; r < topo_.dp; ++r) {
    const RankPlace place = Place(r);
    UCP_ASSIGN_OR_RETURN(const Value* model, ModelRoot(place));
    UCP_ASSIGN_OR_RETURN(const Value* optim, OptimizerRoot(place));
    UCP_ASSIGN_OR_RETURN(PlanFile mf,
                         frames_.Frame(formats::deepspeed::ZeroModelStatesFileName(r, 0),
                                       FileRole::kModelRewrite, *model));
    UCP_ASSIGN_OR_RETURN(PlanFile of, frames_.Frame(internal_sink::OptimizerFileName(in_, t_, r),
                                                    FileRole::kOptimizerState, *optim));
    plan.files.push_back(std::move(mf));
    plan.files.push_back(std::move(of));
  }
  frames_.FinishZeros(&plan);
  UCP_RETURN_IF_ERROR(plan::ValidatePlan(plan));
  return plan;
}

}  // namespace

namespace internal_sink {

absl::StatusOr<plan::Plan> PlanZero3(const ZeroSinkInput& in, const ZeroTarget& target) {
  Planner planner(in, target);
  return planner.Run();
}

}  // namespace internal_sink
}  // namespace ucp::converters::sinks
