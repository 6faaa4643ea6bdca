// IndexZero3: fragments of a DeepSpeedZeroOptimizer_Stage3 checkpoint (deepspeed-formats.md §2.3,
// §4, §6.5 step 3, §7.3). Per MP rank, sub-group s and DP rank: fp32_flat_groups[s] (and the
// optimizer's state[s] exp_avg / exp_avg_sq) is the concatenation, in param_shapes[s] order, of
// each param's P = ceil(numel / W) element partition; rank r holds elements [r*P, (r+1)*P) of the
// flattened param, those past numel being padding. W and r are the sub-group's partition group
// (ds_zero_partition_groups[s]: the expert-DP group for AutoEP experts), else the DP world.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "converters/deepspeed/index_builder.h"
#include "formats/base/checked_math.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "ucp/shard_layout.h"

namespace ucp::converters::deepspeed::internal_ds {
using formats::deepspeed::kMaxCount;
using formats::torch::TensorRef;
using formats::torch::Value;
namespace keys = formats::deepspeed::keys;
using formats::deepspeed::AsDict;
using formats::deepspeed::AsInt;
using formats::deepspeed::AsIntIn;
using formats::deepspeed::AsIntList;
using formats::deepspeed::AsSequence;
using formats::deepspeed::AsStrList;
using formats::deepspeed::AsTensor;
using formats::deepspeed::GetByInt;
using formats::deepspeed::IsSet;
using formats::deepspeed::Require;
namespace {

struct SubGroupState {
  const TensorRef* fp32 = nullptr;
  const TensorRef* exp_avg = nullptr;
  const TensorRef* exp_avg_sq = nullptr;
  const Value* step = nullptr;
  const Value* partition_group = nullptr;  // ds_zero_partition_groups[s], or nullptr
};

struct Shard {
  int file = -1;
  const Value* param_groups = nullptr;  // the torch optimizer's param_groups
  std::vector<SubGroupState> subs;
};

absl::StatusOr<Shard> ReadShard(const CheckpointIndex& index, int file, size_t num_sub) {
  const std::string ctx = absl::StrCat(FileContext(index, file), ": ", keys::kOptimizerStateDict);
  const Value& osd = *index.files[file].root().Get(keys::kOptimizerStateDict);
  UCP_ASSIGN_OR_RETURN(const Value* count_value, Require(osd, keys::kPartitionCount, ctx));
  UCP_ASSIGN_OR_RETURN(int64_t count, AsIntIn(count_value, 1, kMaxCount,
                                              absl::StrCat(ctx, ".", keys::kPartitionCount)));
  if (count != index.topology.dp) {
    return absl::FailedPreconditionError(absl::StrCat(ctx, ".", keys::kPartitionCount, " is ",
                                                      count, ", the dp world size is ",
                                                      index.topology.dp));
  }
  const std::string inner_ctx = absl::StrCat(ctx, ".", keys::kOptimizerStateDict);
  UCP_ASSIGN_OR_RETURN(const Value* inner, Require(osd, keys::kOptimizerStateDict, ctx));
  UCP_RETURN_IF_ERROR(AsDict(inner, inner_ctx).status());
  UCP_ASSIGN_OR_RETURN(const Value* state, Require(*inner, keys::kState, inner_ctx));
  Shard shard;
  shard.file = file;
  UCP_ASSIGN_OR_RETURN(shard.param_groups, Require(*inner, keys::kParamGroups, inner_ctx));
  UCP_RETURN_IF_ERROR(
      AsSequence(shard.param_groups, absl::StrCat(inner_ctx, ".", keys::kParamGroups)).status());
  UCP_ASSIGN_OR_RETURN(const Value* flat_value, Require(osd, keys::kFp32FlatGroups, ctx));
  UCP_ASSIGN_OR_RETURN(auto flats,
                       AsSequence(flat_value, absl::StrCat(ctx, ".", keys::kFp32FlatGroups)));
  if (flats.size() != num_sub) {
    return absl::FailedPreconditionError(absl::StrCat(ctx, ".", keys::kFp32FlatGroups, ": ",
                                                      flats.size(),
                                                      " sub-groups, param_shapes has ", num_sub));
  }
  absl::Span<const Value* const> partition_groups;
  if (const Value* pg = osd.Get(keys::kDsZeroPartitionGroups); IsSet(pg)) {
    UCP_ASSIGN_OR_RETURN(partition_groups,
                         AsSequence(pg, absl::StrCat(ctx, ".", keys::kDsZeroPartitionGroups)));
  }
  for (size_t s = 0; s < num_sub; ++s) {
    SubGroupState sub;
    const std::string state_ctx = absl::StrCat(inner_ctx, ".", keys::kState, "[", s, "]");
    const Value* st = GetByInt(*state, static_cast<int64_t>(s));
    if (st == nullptr || !st->is_dict())
      return absl::DataLossError(absl::StrCat(state_ctx, ": missing"));
    UCP_ASSIGN_OR_RETURN(sub.exp_avg, AsTensor(st->Get(keys::kExpAvg),
                                               absl::StrCat(state_ctx, ".", keys::kExpAvg), true));
    UCP_ASSIGN_OR_RETURN(
        sub.exp_avg_sq,
        AsTensor(st->Get(keys::kExpAvgSq), absl::StrCat(state_ctx, ".", keys::kExpAvgSq), true));
    sub.step = st->Get(keys::kStep);
    UCP_ASSIGN_OR_RETURN(
        sub.fp32,
        AsTensor(flats[s], absl::StrCat(ctx, ".", keys::kFp32FlatGroups, "[", s, "]"), true));
    if (s < partition_groups.size()) sub.partition_group = partition_groups[s];
    shard.subs.push_back(sub);
  }
  return shard;
}

// Sub-group → torch param group, from param_groups[g]['params'] (the sub-group indices).
absl::StatusOr<std::vector<int>> SubGroupOwners(const CheckpointIndex& index, const Shard& shard,
                                                size_t num_sub) {
  const std::string ctx =
      absl::StrCat(FileContext(index, shard.file), ": optimizer ", keys::kParamGroups);
  std::vector<int> owner(num_sub, -1);
  auto groups = shard.param_groups->items();
  for (size_t g = 0; g < groups.size(); ++g) {
    UCP_ASSIGN_OR_RETURN(const Value* d, AsDict(groups[g], absl::StrCat(ctx, "[", g, "]")));
    UCP_ASSIGN_OR_RETURN(const Value* params,
                         Require(*d, keys::kParams, absl::StrCat(ctx, "[", g, "]")));
    UCP_ASSIGN_OR_RETURN(std::vector<int64_t> ids,
                         AsIntList(params, absl::StrCat(ctx, "[", g, "].", keys::kParams)));
    for (int64_t id : ids) {
      if (id < 0 || id >= static_cast<int64_t>(num_sub) || owner[id] >= 0) {
        return absl::DataLossError(
            absl::StrCat(ctx, "[", g, "].params: sub-group ", id, " is unknown or listed twice"));
      }
      owner[id] = static_cast<int>(g);
    }
  }
  for (size_t s = 0; s < num_sub; ++s) {
    if (owner[s] < 0)
      return absl::DataLossError(absl::StrCat(ctx, ": no param group owns sub-group ", s));
  }
  return owner;
}

absl::StatusOr<bool> IsExpertFamily(const Value* partition_group, const std::string& ctx) {
  if (partition_group == nullptr) return false;
  UCP_ASSIGN_OR_RETURN(const Value* d, AsDict(partition_group, ctx));
  const Value* families = d->Get(keys::kFamilies);
  if (families == nullptr) return false;
  UCP_ASSIGN_OR_RETURN(std::vector<std::string> names,
                       AsStrList(families, absl::StrCat(ctx, ".", keys::kFamilies)));
  return std::find(names.begin(), names.end(), keys::kFamilyAutoepExpert) != names.end();
}

absl::Status CreateGroups(const std::vector<GroupShapes>& shapes, const Shard& shard0,
                          CheckpointIndex* index) {
  UCP_ASSIGN_OR_RETURN(std::vector<int> owner, SubGroupOwners(*index, shard0, shapes.size()));
  const auto expert_names = ExpertParamNames(*index);
  for (size_t g = 0; g < shard0.param_groups->items().size(); ++g) {
    index->param_groups.push_back(
        ParamGroup{static_cast<int>(g), shard0.param_groups->items()[g], {}, false});
  }
  for (size_t s = 0; s < shapes.size(); ++s) {
    const std::string ctx = absl::StrCat(FileContext(*index, shard0.file), ": ",
                                         keys::kDsZeroPartitionGroups, "[", s, "]");
    UCP_ASSIGN_OR_RETURN(bool expert_family, IsExpertFamily(shard0.subs[s].partition_group, ctx));
    FlatGroup fg;
    fg.index = static_cast<int>(s);
    fg.param_group = owner[s];
    fg.expert = expert_family;
    for (const auto& [name, shape] : shapes[s]) {
      auto it = expert_names.find(name);
      if ((it != expert_names.end()) != expert_family) {
        return absl::DataLossError(
            absl::StrCat(ctx, ": parameter '", name, "' is ", expert_family ? "not " : "",
                         "an AutoEP expert, but the sub-group's family says otherwise"));
      }
      UCP_ASSIGN_OR_RETURN(
          Parameter p, NewParam(*index, expert_names, name, shape, owner[s], static_cast<int>(s)));
      fg.params.push_back(static_cast<int>(index->params.size()));
      index->params.push_back(std::move(p));
    }
    ParamGroup& pg = index->param_groups[owner[s]];
    pg.flat_groups.push_back(static_cast<int>(s));
    pg.expert = pg.expert || expert_family;
    index->flat_groups.push_back(std::move(fg));
  }
  return absl::OkStatus();
}

// (W, r) of sub-group s on DP rank dp, checked against the topology (§4.4).
absl::Status PartitionOf(const CheckpointIndex& index, const Shard& shard, int s, int dp,
                         int64_t* w, int64_t* r) {
  const ucp::Topology& t = index.topology;
  const FlatGroup& fg = index.flat_groups[s];
  const Value* pg = shard.subs[s].partition_group;
  *w = fg.expert ? t.edp() : t.dp;
  *r = fg.expert ? t.PlaceOnEp(dp).edp_rank : dp;
  if (pg == nullptr) {
    if (fg.expert)
      return absl::DataLossError(absl::StrCat(FileContext(index, shard.file),
                                              ": no partition group for expert sub-group ", s));
    return absl::OkStatus();
  }
  const std::string ctx =
      absl::StrCat(FileContext(index, shard.file), ": ", keys::kDsZeroPartitionGroups, "[", s, "]");
  UCP_ASSIGN_OR_RETURN(const Value* d, AsDict(pg, ctx));
  UCP_ASSIGN_OR_RETURN(const Value* sub, Require(*d, keys::kSubGroup, ctx));
  UCP_ASSIGN_OR_RETURN(const Value* count, Require(*d, keys::kPartitionCount, ctx));
  UCP_ASSIGN_OR_RETURN(const Value* rank, Require(*d, keys::kPartitionRank, ctx));
  UCP_ASSIGN_OR_RETURN(const Value* ranks, Require(*d, keys::kPartitionRanks, ctx));
  UCP_ASSIGN_OR_RETURN(int64_t sub_id, AsInt(sub, absl::StrCat(ctx, ".", keys::kSubGroup)));
  UCP_ASSIGN_OR_RETURN(int64_t saved_w,
                       AsInt(count, absl::StrCat(ctx, ".", keys::kPartitionCount)));
  UCP_ASSIGN_OR_RETURN(int64_t saved_r, AsInt(rank, absl::StrCat(ctx, ".", keys::kPartitionRank)));
  UCP_ASSIGN_OR_RETURN(std::vector<int64_t> members,
                       AsIntList(ranks, absl::StrCat(ctx, ".", keys::kPartitionRanks)));
  std::vector<int64_t> expected;
  for (int64_t i = 0; i < *w; ++i) {
    expected.push_back(
        fg.expert ? t.DpRank(ucp::EpPlace{t.PlaceOnEp(dp).ep_rank, static_cast<int>(i)}) : i);
  }
  if (sub_id != s || saved_w != *w || saved_r != *r || members != expected) {
    return absl::FailedPreconditionError(
        absl::StrCat(ctx, ": sub_group ", sub_id, ", partition rank ", saved_r, " of ", saved_w,
                     " does not match dp rank ", dp, " (expected rank ", *r, " of ", *w,
                     fg.expert ? " in its expert-DP group" : "", ")"));
  }
  return absl::OkStatus();
}

absl::Status IndexSubGroup(const Shard& shard, int mp, int dp, int s, CheckpointIndex* index) {
  FlatGroup& fg = index->flat_groups[s];
  const SubGroupState& sub = shard.subs[s];
  int64_t w = 0, r = 0;
  UCP_RETURN_IF_ERROR(PartitionOf(*index, shard, s, dp, &w, &r));
  ucp::GroupSpec spec{ucp::PartitionKind::kPerParam, {}, fg.expert};
  for (int pi : fg.params) spec.numels.push_back(ShapeNumel(index->params[pi].slices[mp].shape));
  const ucp::RankShard rank = ucp::ShardLayout(std::move(spec), index->topology).Shard(dp);
  for (const ucp::ShardPiece& piece : rank.pieces) {
    Parameter& p = index->params[fg.params[piece.param]];
    const TensorRef* tensors[kNumStates] = {sub.fp32, sub.exp_avg, sub.exp_avg_sq};
    UCP_ASSIGN_OR_RETURN(Fragment f,
                         PieceFragment(*index, shard.file, dp, rank, piece, tensors, p.name));
    p.slices[mp].fragments.push_back(std::move(f));
  }
  const int64_t offset = rank.size, padding = rank.padding;
  const ZeroKind& zk = index->kind;
  for (const TensorRef* tensor : {sub.fp32, sub.exp_avg, sub.exp_avg_sq}) {
    if (tensor->NumElements() != offset) {
      return absl::DataLossError(absl::StrCat(
          FileContext(*index, shard.file), ": sub-group ", s, " holds ", tensor->NumElements(),
          " elements, its param_shapes partitions add up to ", offset));
    }
  }
  if (sub.fp32->dtype != zk.master_dtype || sub.exp_avg->dtype != zk.state_dtype ||
      sub.exp_avg_sq->dtype != zk.state_dtype) {
    return absl::DataLossError(absl::StrCat(FileContext(*index, shard.file), ": sub-group ", s,
                                            " has dtypes other than ", DTypeName(zk.master_dtype),
                                            " / ", DTypeName(zk.state_dtype)));
  }
  fg.partition_count = static_cast<int>(w);
  fg.ranks.push_back(FlatGroupRank{mp, dp, offset, padding, 0, sub.step, shard.file});
  const FlatGroupRank& first = fg.ranks.front();
  return CheckSameStep(*index, shard.file, sub.step, first.step_file, first.step,
                       absl::StrCat("the step of sub-group ", s));
}

// Every rank's model file of an MP rank must carry the same param_shapes (§7.3).
absl::Status CheckSameShapes(const CheckpointIndex& index, int mp,
                             const std::vector<GroupShapes>& shapes) {
  for (int dp = 1; dp < index.topology.dp; ++dp) {
    const CheckpointFile& f = index.model_file(mp, dp);
    absl::StatusOr<std::vector<GroupShapes>> other = ReadParamShapes(f.root());
    if (!other.ok()) return WithContext(other.status(), f.path);
    if (*other != shapes) {
      return absl::FailedPreconditionError(
          absl::StrCat(f.path, ": param_shapes differ from ", index.model_file(mp, 0).path));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status IndexZero3(CheckpointIndex* index) {
  ucp::Topology& t = index->topology;
  ZeroKind& zk = index->kind;
  for (int mp = 0; mp < t.mp(); ++mp) {
    const CheckpointFile& model = index->model_file(mp, 0);
    absl::StatusOr<std::vector<GroupShapes>> shapes = ReadParamShapes(model.root());
    if (!shapes.ok()) return WithContext(shapes.status(), model.path);
    UCP_RETURN_IF_ERROR(CheckSameShapes(*index, mp, *shapes));
    std::vector<Shard> shards;
    for (int dp = 0; dp < t.dp; ++dp) {
      UCP_ASSIGN_OR_RETURN(Shard shard,
                           ReadShard(*index, index->optim_files[mp * t.dp + dp], shapes->size()));
      shards.push_back(std::move(shard));
    }
    if (mp == 0) {
      if (shapes->empty())
        return absl::DataLossError(absl::StrCat(model.path, ": empty ", keys::kParamShapes));
      zk.master_dtype = shards[0].subs[0].fp32->dtype;
      zk.state_dtype = shards[0].subs[0].exp_avg->dtype;
      UCP_RETURN_IF_ERROR(CreateGroups(*shapes, shards[0], index));
      for (Parameter& p : index->params) p.slices.push_back(ParamSlice{0, p.shape, {}});
    } else {
      UCP_RETURN_IF_ERROR(AddSlices(mp, *shapes, index));
    }
    for (int s = 0; s < static_cast<int>(shapes->size()); ++s) {
      for (int dp = 0; dp < t.dp; ++dp)
        UCP_RETURN_IF_ERROR(IndexSubGroup(shards[dp], mp, dp, s, index));
    }
  }
  return absl::OkStatus();
}

}  // namespace ucp::converters::deepspeed::internal_ds
