// Native DeepSpeed MoE (deepspeed.moe.layer.MoE) under ZeRO-1/2 (deepspeed-formats.md §1.2, §2.5,
// §3.1): the model file carries `num_experts` (one int per MoE layer) and no ds_autoep_layers;
// expert weights live in `layer_{L}_expert_{E}_mp_rank_XX_model_states.pt` (global ids) and, in
// the optimizer, in `moe: True` param groups partitioned over the expert-data-parallel group.
// Each expert parameter is named by its *local* id (`...deepspeed_experts.<local>.<rest>`), so the
// same name holds a different global expert on every EP rank: expert e·n_local + local on EP rank
// e. The index keeps one Parameter per local name whose fragments carry their EP rank; the UCP
// stacks the EP ranks' tensors on a new dim 0 ([ep_size, ...], docs/ucp.md "Native MoE").
#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "converters/deepspeed/index_builder.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"

namespace ucp::converters::deepspeed::internal_ds {
using formats::deepspeed::kMaxCount;
using formats::torch::Value;
using formats::torch::ValueKind;
namespace keys = formats::deepspeed::keys;
using formats::deepspeed::AsBool;
using formats::deepspeed::AsIntIn;
using formats::deepspeed::AsIntList;
using formats::deepspeed::AsSequence;
using formats::deepspeed::Describe;
using formats::deepspeed::FileName;
using formats::deepspeed::Require;
namespace {

constexpr absl::string_view kExpertsInfix = keys::kNativeExpertsInfix;

bool IsTrue(const Value* v) { return v != nullptr && v->is(ValueKind::kBool) && v->bool_value(); }

// The expert-DP size W of the moe param groups in the (dp 0, mp 0) shard; ep = dp / W.
absl::StatusOr<int> ExpertDpSize(const CheckpointIndex& index) {
  const CheckpointFile& shard = index.optim_file(0);
  const std::string ctx = absl::StrCat(shard.path, ": ", keys::kOptimizerStateDict);
  UCP_ASSIGN_OR_RETURN(const Value* osd,
                       Require(shard.root(), keys::kOptimizerStateDict, shard.path));
  UCP_ASSIGN_OR_RETURN(const Value* base, Require(*osd, keys::kBaseOptimizerState, ctx));
  UCP_ASSIGN_OR_RETURN(const Value* groups_v, Require(*base, keys::kParamGroups, ctx));
  UCP_ASSIGN_OR_RETURN(auto groups,
                       AsSequence(groups_v, absl::StrCat(ctx, ".", keys::kParamGroups)));
  UCP_ASSIGN_OR_RETURN(const Value* counts_v, Require(*osd, keys::kPartitionCount, ctx));
  UCP_ASSIGN_OR_RETURN(auto counts,
                       AsSequence(counts_v, absl::StrCat(ctx, ".", keys::kPartitionCount)));
  if (counts.size() != groups.size()) {
    return absl::DataLossError(absl::StrCat(ctx, ": ", counts.size(), " partition counts for ",
                                            groups.size(), " param groups"));
  }
  int w = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    if (!groups[g]->is_dict() || !IsTrue(groups[g]->Get(keys::kMoe))) continue;
    UCP_ASSIGN_OR_RETURN(int64_t n,
                         AsIntIn(counts[g], 1, kMaxCount,
                                 absl::StrCat(ctx, ".", keys::kPartitionCount, "[", g, "]")));
    if (w != 0 && n != w) {
      return absl::UnimplementedError(absl::StrCat(
          ctx, ": native MoE param groups with different expert-DP sizes (", w, " and ", n, ")"));
    }
    w = static_cast<int>(n);
  }
  if (w == 0) {
    return absl::DataLossError(
        absl::StrCat(ctx, ": the model file has ", keys::kNumExperts,
                     " (native DeepSpeed MoE) but no param group is marked 'moe'"));
  }
  return w;
}

}  // namespace

absl::Status ReadNativeMoe(CheckpointIndex* index) {
  ucp::Topology& t = index->topology;
  ZeroKind& zk = index->kind;
  const CheckpointFile& model = index->model_file();
  const std::string ctx = absl::StrCat(model.path, ": ", keys::kNumExperts);
  if (zk.zero_stage != 1 && zk.zero_stage != 2) {
    return absl::UnimplementedError(
        absl::StrCat(ctx,
                     ": native DeepSpeed MoE is supported with ZeRO-1/2 only, "
                     "this is ZeRO-",
                     zk.zero_stage));
  }
  if (zk.wrapper != OptimizerWrapper::kZeroOptimizer || t.tp != 1) {
    return absl::UnimplementedError(absl::StrCat(ctx, ": native MoE with ",
                                                 OptimizerWrapperName(zk.wrapper), ", tp ", t.tp,
                                                 " is not supported"));
  }
  const Value* v = model.root().Get(keys::kNumExperts);
  if (v == nullptr || !v->is_sequence()) {
    return absl::UnimplementedError(
        absl::StrCat(ctx, ": ", v == nullptr ? "absent" : Describe(v),
                     "; native DeepSpeed MoE expert files without a num_experts "
                     "list (legacy MoE) are not supported"));
  }
  UCP_ASSIGN_OR_RETURN(std::vector<int64_t> experts, AsIntList(v, ctx));
  UCP_ASSIGN_OR_RETURN(int w, ExpertDpSize(*index));
  if (t.dp % w != 0) {
    return absl::DataLossError(absl::StrCat(index->optim_file(0).path, ": expert-DP size ", w,
                                            " does not divide the dp world size ", t.dp));
  }
  t.ep = t.dp / w;
  if (const Value* config = model.root().Get(keys::kDsConfig);
      config != nullptr && config->is_dict()) {
    if (const Value* f = config->Get(keys::kUseDataBeforeExpertParallelism); f != nullptr) {
      UCP_ASSIGN_OR_RETURN(t.use_data_before_expert_parallelism,
                           AsBool(f, absl::StrCat(model.path, ": ", keys::kDsConfig, ".",
                                                  keys::kUseDataBeforeExpertParallelism)));
    }
  }
  std::set<std::pair<int, int>> files;  // (layer, expert) of mp rank 0
  for (int fi : index->expert_files) {
    const FileName& n = index->files[fi].name;
    if (n.mp_rank == 0) files.emplace(n.layer, n.expert);
  }
  for (size_t l = 0; l < experts.size(); ++l) {
    if (experts[l] < 1 || experts[l] > kMaxCount || experts[l] % t.ep != 0) {
      return absl::DataLossError(absl::StrCat(ctx, "[", l, "] is ", experts[l],
                                              ", not a positive multiple of ep_size ", t.ep));
    }
    for (int e = 0; e < experts[l]; ++e) {
      if (files.erase({static_cast<int>(l), e}) == 0) {
        return absl::NotFoundError(absl::StrCat(index->dir.tag_dir, "/layer_", l, "_expert_", e,
                                                "_mp_rank_00_model_states.pt: missing (", ctx,
                                                " says ", experts[l], " experts)"));
      }
    }
    index->native_moe_num_experts.push_back(static_cast<int>(experts[l]));
  }
  if (!files.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(index->dir.tag_dir, ": expert file of layer ",
                                                      files.begin()->first, ", expert ",
                                                      files.begin()->second, " is beyond ", ctx));
  }
  return absl::OkStatus();
}

absl::StatusOr<ExpertInfo> NativeExpertInfo(const CheckpointIndex& index, const std::string& name,
                                            std::vector<std::string>* layer_prefixes) {
  const std::string ctx =
      absl::StrCat(index.model_file().path, ": ", keys::kParamShapes, " '", name, "'");
  const size_t at = absl::string_view(name).find(kExpertsInfix);
  if (at == std::string::npos) {
    return absl::DataLossError(
        absl::StrCat(ctx, ": in an MoE param group but not named '...", kExpertsInfix, "<id>...'"));
  }
  const std::string prefix = name.substr(0, at);
  auto it = std::find(layer_prefixes->begin(), layer_prefixes->end(), prefix);
  const int layer = static_cast<int>(it - layer_prefixes->begin());
  if (it == layer_prefixes->end()) layer_prefixes->push_back(prefix);
  if (layer >= static_cast<int>(index.native_moe_num_experts.size())) {
    return absl::DataLossError(absl::StrCat(ctx, ": MoE layer ", layer, " but ", keys::kNumExperts,
                                            " lists ", index.native_moe_num_experts.size()));
  }
  const absl::string_view rest = absl::string_view(name).substr(at + kExpertsInfix.size());
  int local = -1;
  const int num_local = index.native_moe_num_experts[layer] / index.topology.ep;
  if (!absl::SimpleAtoi(rest.substr(0, rest.find('.')), &local) || local < 0 ||
      local >= num_local) {
    return absl::DataLossError(
        absl::StrCat(ctx, ": local expert id is not in [0, ", num_local, ")"));
  }
  // UCP rows: one per EP rank (see the file comment and ExpertInfo::stacked).
  return ExpertInfo{layer, index.topology.ep, 1, true};
}

}  // namespace ucp::converters::deepspeed::internal_ds
