// IndexZero12: fragments of a DeepSpeedZeroOptimizer (ZeRO-1/2) or BF16_Optimizer checkpoint
// (deepspeed-formats.md §2.2, §3, §7.2). Per MP rank, per optimizer param group g and DP rank:
// the flat group is the concatenation of param_shapes[g] (padded to W partitions of P elements);
// the rank's `param_slice_mappings[g]` must list exactly the params overlapping its partition
// [r*P, (r+1)*P), with fragment_address(start = offset in the partition, numel). The fp32 master
// partition and the exp_avg / exp_avg_sq tensors share that partition indexing.
#include <algorithm>
#include <optional>

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
using formats::torch::ValueKind;
namespace keys = formats::deepspeed::keys;
using formats::deepspeed::AsDict;
using formats::deepspeed::AsFragmentAddress;
using formats::deepspeed::AsIntIn;
using formats::deepspeed::AsSequence;
using formats::deepspeed::AsTensor;
using formats::deepspeed::Describe;
using formats::deepspeed::FragmentAddress;
using formats::deepspeed::GetByInt;
using formats::deepspeed::Require;
namespace {

// What one shard holds for one flat group.
struct ShardGroup {
  const TensorRef* fp32 = nullptr;
  const TensorRef* exp_avg = nullptr;
  const TensorRef* exp_avg_sq = nullptr;
  const Value* step = nullptr;
  const Value* mappings = nullptr;  // OD name → fragment_address
  int64_t partition_count = 0;
  int64_t saved_padding = 0;
};

struct Shard {
  int file = -1;
  const Value* param_groups = nullptr;  // base optimizer param_groups
  std::vector<ShardGroup> groups;
};

absl::StatusOr<const Value*> ListOf(const Value& osd, absl::string_view key, size_t count,
                                    const std::string& ctx) {
  UCP_ASSIGN_OR_RETURN(const Value* v, Require(osd, key, ctx));
  UCP_ASSIGN_OR_RETURN(auto items, AsSequence(v, absl::StrCat(ctx, ".", key)));
  if (items.size() != count) {
    return absl::FailedPreconditionError(
        absl::StrCat(ctx, ".", key, ": ", items.size(), " groups, param_shapes has ", count));
  }
  return v;
}

absl::StatusOr<ShardGroup> ReadShardGroup(const Value& osd, const Value& state, size_t g,
                                          const std::string& ctx) {
  ShardGroup sg;
  const std::string state_ctx =
      absl::StrCat(ctx, ".", keys::kBaseOptimizerState, ".", keys::kState, "[", g, "]");
  const Value* s = GetByInt(state, static_cast<int64_t>(g));
  if (s == nullptr || !s->is_dict())
    return absl::DataLossError(absl::StrCat(state_ctx, ": missing"));
  UCP_ASSIGN_OR_RETURN(sg.exp_avg, AsTensor(s->Get(keys::kExpAvg),
                                            absl::StrCat(state_ctx, ".", keys::kExpAvg), true));
  UCP_ASSIGN_OR_RETURN(
      sg.exp_avg_sq,
      AsTensor(s->Get(keys::kExpAvgSq), absl::StrCat(state_ctx, ".", keys::kExpAvgSq), true));
  sg.step = s->Get(keys::kStep);
  const std::string fp32_ctx =
      absl::StrCat(ctx, ".", keys::kSinglePartitionOfFp32Groups, "[", g, "]");
  UCP_ASSIGN_OR_RETURN(
      sg.fp32, AsTensor(osd.Get(keys::kSinglePartitionOfFp32Groups)->items()[g], fp32_ctx, true));
  sg.mappings = osd.Get(keys::kParamSliceMappings)->items()[g];
  if (!sg.mappings->is_dict()) {
    return absl::DataLossError(
        absl::StrCat(ctx, ".", keys::kParamSliceMappings, "[", g, "]: not a dict"));
  }
  const std::string count_ctx = absl::StrCat(ctx, ".", keys::kPartitionCount, "[", g, "]");
  UCP_ASSIGN_OR_RETURN(sg.partition_count, AsIntIn(osd.Get(keys::kPartitionCount)->items()[g], 1,
                                                   kMaxCount, count_ctx));
  if (const Value* paddings = osd.Get(keys::kGroupPaddings);
      paddings != nullptr && paddings->is_sequence() && g < paddings->items().size()) {
    UCP_ASSIGN_OR_RETURN(sg.saved_padding,
                         AsIntIn(paddings->items()[g], 0, kMaxTensorElements,
                                 absl::StrCat(ctx, ".", keys::kGroupPaddings, "[", g, "]")));
  }
  return sg;
}

absl::StatusOr<Shard> ReadShard(const CheckpointIndex& index, int file, size_t num_groups) {
  const std::string ctx = absl::StrCat(FileContext(index, file), ": ", keys::kOptimizerStateDict);
  const Value& osd =
      *index.files[file].root().Get(keys::kOptimizerStateDict);  // checked by LoadFiles
  UCP_ASSIGN_OR_RETURN(const Value* base, Require(osd, keys::kBaseOptimizerState, ctx));
  if (base->is_sequence()) {
    return absl::UnimplementedError(absl::StrCat(
        ctx, ".", keys::kBaseOptimizerState, " is a list: elastic checkpoints are not supported"));
  }
  const std::string base_ctx = absl::StrCat(ctx, ".", keys::kBaseOptimizerState);
  UCP_ASSIGN_OR_RETURN(const Value* state, Require(*base, keys::kState, base_ctx));
  UCP_RETURN_IF_ERROR(AsDict(state, absl::StrCat(base_ctx, ".state")).status());
  Shard shard;
  shard.file = file;
  UCP_ASSIGN_OR_RETURN(shard.param_groups, ListOf(*base, keys::kParamGroups, num_groups, base_ctx));
  UCP_RETURN_IF_ERROR(ListOf(osd, keys::kSinglePartitionOfFp32Groups, num_groups, ctx).status());
  UCP_RETURN_IF_ERROR(ListOf(osd, keys::kParamSliceMappings, num_groups, ctx).status());
  UCP_RETURN_IF_ERROR(ListOf(osd, keys::kPartitionCount, num_groups, ctx).status());
  for (size_t g = 0; g < num_groups; ++g) {
    UCP_ASSIGN_OR_RETURN(ShardGroup sg, ReadShardGroup(osd, *state, g, ctx));
    shard.groups.push_back(sg);
  }
  return shard;
}

// Creates param groups, flat groups and params from MP rank 0's param_shapes.
absl::Status CreateGroups(const std::vector<GroupShapes>& shapes, const Shard& shard0,
                          CheckpointIndex* index) {
  const auto expert_names = ExpertParamNames(*index);
  std::vector<std::string> native_layers;  // native MoE module prefixes, in order
  for (size_t g = 0; g < shapes.size(); ++g) {
    const int gi = static_cast<int>(g);
    FlatGroup fg;
    fg.index = fg.param_group = gi;
    int experts = 0;
    for (const auto& [name, shape] : shapes[g]) experts += expert_names.contains(name) ? 1 : 0;
    if (experts != 0 && experts != static_cast<int>(shapes[g].size())) {
      return absl::DataLossError(absl::StrCat(index->model_file().path, ": ", keys::kParamShapes,
                                              "[", g,
                                              "] mixes AutoEP expert and dense parameters"));
    }
    fg.expert = experts > 0;
    const Value* hyper = shard0.param_groups->items()[g];
    const Value* moe = hyper->is_dict() ? hyper->Get(keys::kMoe) : nullptr;
    const bool native =
        !fg.expert && moe != nullptr && moe->is(ValueKind::kBool) && moe->bool_value();
    if (native && index->native_moe_num_experts.empty()) {
      return absl::UnimplementedError(
          absl::StrCat(FileContext(*index, shard0.file), ": param group ", g,
                       " is an MoE group, but the model file has neither AutoEP "
                       "metadata nor num_experts"));
    }
    fg.expert = fg.expert || native;
    for (const auto& [name, shape] : shapes[g]) {
      UCP_ASSIGN_OR_RETURN(Parameter p, NewParam(*index, expert_names, name, shape, gi, gi));
      if (native) {
        UCP_ASSIGN_OR_RETURN(p.expert, NativeExpertInfo(*index, name, &native_layers));
      }
      fg.params.push_back(static_cast<int>(index->params.size()));
      index->params.push_back(std::move(p));
    }
    index->param_groups.push_back(ParamGroup{gi, hyper, {gi}, fg.expert});
    index->flat_groups.push_back(std::move(fg));
  }
  return absl::OkStatus();
}

absl::Status CheckDtypes(const ShardGroup& sg, const std::string& ctx, const ZeroKind& t) {
  if (sg.fp32->dtype != t.master_dtype || sg.exp_avg->dtype != t.state_dtype ||
      sg.exp_avg_sq->dtype != t.state_dtype) {
    return absl::DataLossError(absl::StrCat(
        ctx, ": dtypes (", DTypeName(sg.fp32->dtype), ", ", DTypeName(sg.exp_avg->dtype), ", ",
        DTypeName(sg.exp_avg_sq->dtype), ") differ from the other groups"));
  }
  return absl::OkStatus();
}

// The rank's paddings and master-partition length, checked against the layout; its step, checked
// against the other ranks'.
absl::Status RecordRank(const Shard& shard, int mp, int dp, int g, const ucp::RankShard& rank,
                        CheckpointIndex* index) {
  FlatGroup& fg = index->flat_groups[g];
  const ShardGroup& sg = shard.groups[g];
  const bool bf16 = index->kind.wrapper == OptimizerWrapper::kBf16Optimizer;
  const int64_t expected_saved = rank.SavedPadding(bf16);
  if (sg.saved_padding != expected_saved) {
    return absl::DataLossError(absl::StrCat(FileContext(*index, shard.file), ": ",
                                            keys::kGroupPaddings, "[", g, "] is ", sg.saved_padding,
                                            ", the layout implies ", expected_saved));
  }
  // DeepSpeedZeroOptimizer saves the master partition without its padding; BF16_Optimizer whole.
  const int64_t fp32_numel = bf16 ? rank.size : rank.size - rank.padding;
  if (sg.fp32->NumElements() != fp32_numel) {
    return absl::DataLossError(absl::StrCat(
        FileContext(*index, shard.file), ": ", keys::kSinglePartitionOfFp32Groups, "[", g, "] has ",
        sg.fp32->NumElements(), " elements, the layout implies ", fp32_numel));
  }
  fg.ranks.push_back(
      FlatGroupRank{mp, dp, rank.size, rank.padding, sg.saved_padding, sg.step, shard.file});
  const FlatGroupRank& first = fg.ranks.front();
  return CheckSameStep(*index, shard.file, sg.step, first.step_file, first.step,
                       absl::StrCat("the step of param group ", g));
}

// The fragments of group g on one shard: param_slice_mappings must list exactly the layout's
// pieces of the rank, in order.
absl::Status IndexShardGroup(const Shard& shard, int mp, int dp, int g,
                             const ucp::ShardLayout& layout, CheckpointIndex* index) {
  FlatGroup& fg = index->flat_groups[g];
  const ShardGroup& sg = shard.groups[g];
  const std::string ctx =
      absl::StrCat(FileContext(*index, shard.file), ": ", keys::kParamSliceMappings, "[", g, "]");
  const ucp::RankShard rank = layout.Shard(dp);
  auto entries = sg.mappings->entries();
  size_t next_entry = 0;
  for (const ucp::ShardPiece& piece : rank.pieces) {
    Parameter& p = index->params[fg.params[piece.param]];
    if (next_entry >= entries.size() || !entries[next_entry].first->is(ValueKind::kStr) ||
        entries[next_entry].first->str() != p.name) {
      return absl::DataLossError(absl::StrCat(
          ctx, ": expected '", p.name, "' at position ", next_entry, ", found ",
          next_entry < entries.size() ? Describe(entries[next_entry].first) : "the end"));
    }
    UCP_ASSIGN_OR_RETURN(
        FragmentAddress addr,
        AsFragmentAddress(entries[next_entry].second, absl::StrCat(ctx, "['", p.name, "']")));
    ++next_entry;
    if (addr.start != piece.partition_offset || addr.numel != piece.numel) {
      return absl::DataLossError(
          absl::StrCat(ctx, "['", p.name, "']: (numel ", addr.numel, ", start ", addr.start,
                       ") disagrees with param_shapes, which place it at (numel ", piece.numel,
                       ", start ", piece.partition_offset, ")"));
    }
    const TensorRef* tensors[kNumStates] = {sg.fp32, sg.exp_avg, sg.exp_avg_sq};
    UCP_ASSIGN_OR_RETURN(Fragment f,
                         PieceFragment(*index, shard.file, dp, rank, piece, tensors, p.name));
    p.slices[mp].fragments.push_back(std::move(f));
  }
  if (next_entry != entries.size()) {
    return absl::DataLossError(
        absl::StrCat(ctx, ": unexpected entry ", Describe(entries[next_entry].first),
                     " (not in param_shapes order, or outside this rank's partition)"));
  }
  return RecordRank(shard, mp, dp, g, rank, index);
}

absl::Status IndexGroup(const std::vector<Shard>& shards, int mp, int g, CheckpointIndex* index) {
  const ucp::Topology& t = index->topology;
  FlatGroup& fg = index->flat_groups[g];
  const int64_t expected_w = fg.expert ? t.edp() : t.dp;
  ucp::GroupSpec spec{ucp::PartitionKind::kFlat, {}, fg.expert};
  int64_t total = 0;
  for (int pi : fg.params) {
    spec.numels.push_back(ShapeNumel(index->params[pi].slices[mp].shape));
    UCP_ASSIGN_OR_RETURN(total, AddCount(total, spec.numels.back(),
                                         absl::StrCat(index->model_file(mp).path, ": ",
                                                      keys::kParamShapes, "[", g, "]")));
  }
  if (total > kMaxTensorElements) {
    return absl::DataLossError(absl::StrCat(index->model_file(mp).path, ": ", keys::kParamShapes,
                                            "[", g, "] holds ", total, " elements"));
  }
  const ucp::ShardLayout layout(std::move(spec), t);
  for (const Shard& shard : shards) {
    const ShardGroup& sg = shard.groups[g];
    const std::string ctx =
        absl::StrCat(FileContext(*index, shard.file), ": ", keys::kOptimizerStateDict);
    if (sg.partition_count != expected_w) {
      return absl::FailedPreconditionError(absl::StrCat(
          ctx, ".", keys::kPartitionCount, "[", g, "] is ", sg.partition_count, ", expected ",
          expected_w, fg.expert ? " (expert-DP size)" : " (dp world size)"));
    }
    if (sg.exp_avg->NumElements() != layout.partition_size() ||
        sg.exp_avg_sq->NumElements() != layout.partition_size()) {
      return absl::FailedPreconditionError(
          absl::StrCat(ctx, ": group ", g, " partition has ", sg.exp_avg->NumElements(),
                       " elements, the layout of its ", total, " over ", expected_w,
                       " ranks implies ", layout.partition_size()));
    }
    UCP_RETURN_IF_ERROR(CheckDtypes(sg, absl::StrCat(ctx, " group ", g), index->kind));
  }
  fg.partition_count = static_cast<int>(expected_w);
  for (int dp = 0; dp < t.dp; ++dp)
    UCP_RETURN_IF_ERROR(IndexShardGroup(shards[dp], mp, dp, g, layout, index));
  return absl::OkStatus();
}

}  // namespace

absl::Status IndexZero12(CheckpointIndex* index) {
  const ucp::Topology& t = index->topology;
  for (int mp = 0; mp < t.mp(); ++mp) {
    const CheckpointFile& model = index->model_file(mp);
    absl::StatusOr<std::vector<GroupShapes>> shapes = ReadParamShapes(model.root());
    if (!shapes.ok()) return WithContext(shapes.status(), model.path);
    std::vector<Shard> shards;
    for (int dp = 0; dp < t.dp; ++dp) {
      UCP_ASSIGN_OR_RETURN(Shard shard,
                           ReadShard(*index, index->optim_files[mp * t.dp + dp], shapes->size()));
      shards.push_back(std::move(shard));
    }
    if (mp == 0) {
      if (shapes->empty())
        return absl::DataLossError(absl::StrCat(model.path, ": empty ", keys::kParamShapes));
      index->kind.master_dtype = shards[0].groups[0].fp32->dtype;
      index->kind.state_dtype = shards[0].groups[0].exp_avg->dtype;
      UCP_RETURN_IF_ERROR(CreateGroups(*shapes, shards[0], index));
      for (Parameter& p : index->params) p.slices.push_back(ParamSlice{0, p.shape, {}});
    } else {
      UCP_RETURN_IF_ERROR(AddSlices(mp, *shapes, index));
    }
    for (int g = 0; g < static_cast<int>(shapes->size()); ++g) {
      UCP_RETURN_IF_ERROR(IndexGroup(shards, mp, g, index));
    }
  }
  return absl::OkStatus();
}

}  // namespace ucp::converters::deepspeed::internal_ds
