// The ZeRO-1/2 / BF16_Optimizer half of the ZeRO sink (docs/reshard.md "ZeRO-1/2"): per target
// rank the optimizer shard DeepSpeed saves after a universal load at that topology (§3, §6.4),
// plus the mp_rank_00 model-states file (the source's, dp_world_size updated).
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "converters/deepspeed/deepspeed_keys.h"
#include "converters/deepspeed/value_access.h"
#include "converters/plan/stage_change.h"
#include "converters/plan/tree_edit.h"
#include "converters/plan/ucp_to_zero.h"
#include "converters/plan/zero12_planner.h"
#include "formats/base/status.h"
#include "ucp/shard_layout.h"
#include "ucp/torch_frame.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::plan {
namespace internal_zero12 {

namespace keys = deepspeed::keys;
namespace ids = deepspeed::internal_ds;

// ZeRO-0 -> ZeRO-1/2: a ZeRO module's parameters are views of one flat buffer per param group,
// laid out and padded like the flat partitions (§3), where a ZeRO-0 module has a storage per
// tensor. Tied aliases view their parameter; frozen parameters and buffers keep their storages.
absl::Status Planner::Zero0FlatModule(Value* root) {
  const Value* module = root->Get(keys::kModule);
  if (module == nullptr || !module->is_dict()) {
    return absl::DataLossError(absl::StrCat(in_.origin, ": model states: no module state dict"));
  }
  Value* out = CopyDict(arena_, *module);
  absl::flat_hash_map<std::string, TensorRef> views;
  for (size_t g = 0; g < in_.groups.size(); ++g) {
    const GroupLayout& l = layouts_[g];
    std::vector<Piece> pieces;
    int64_t at = 0;
    DType dtype = DType::kF32;
    for (size_t i = 0; i < in_.groups[g].params.size(); ++i) {
      const std::string& name = in_.params[in_.groups[g].params[i]].name;
      const Value* v = module->Get(name);
      if (v == nullptr || !v->is(ValueKind::kTensor) || !v->tensor().IsContiguous() ||
          v->tensor().NumElements() != l.numels[i]) {
        return absl::DataLossError(absl::StrCat(in_.origin, ": module has no contiguous tensor '", name, "' of ",
                                                l.numels[i], " elements"));
      }
      const TensorRef& t = v->tensor();
      auto run = in_.storage_runs.find(t.storage);
      const uint64_t elem = DTypeSize(t.dtype);
      const uint64_t begin = static_cast<uint64_t>(t.storage_offset) * elem, size = l.numels[i] * elem;
      if (run == in_.storage_runs.end() || begin + size > run->second.size || (i > 0 && t.dtype != dtype)) {
        return absl::DataLossError(absl::StrCat(in_.origin, ": module tensor '", name, "' is not readable as ",
                                                DTypeName(dtype)));
      }
      dtype = t.dtype;
      if (size > 0) pieces.push_back(Piece{run->second.file, run->second.offset + begin, size});
      TensorRef view = t;
      view.storage_offset = at;
      view.stride = t.shape.ContiguousStrides();
      views[name] = view;
      at += l.numels[i];
    }
    if (l.flat.aligned > at) {
      pieces.push_back(Piece{-1, 0, static_cast<uint64_t>(l.flat.aligned - at) * DTypeSize(dtype)});
    }
    const StorageRef* flat = frames_.NewStorage(dtype, l.flat.aligned, std::move(pieces));
    for (int pi : in_.groups[g].params) views[in_.params[pi].name].storage = flat;
  }
  for (const auto& [alias, stored] : in_.zero0_shared_params) {
    if (auto it = views.find(stored); it != views.end()) views[alias] = it->second;
  }
  for (size_t i = 0; i < out->entries().size(); ++i) {
    const Value* k = out->entries()[i].first;
    if (!k->is(ValueKind::kStr)) continue;
    if (auto it = views.find(k->str()); it != views.end()) ValueArena::ReplaceValue(out, i, arena_.Tensor(it->second));
  }
  SetOrReplace(arena_, root, keys::kModule, out);
  return absl::OkStatus();
}

// Rank `rank`'s partition of group g for one state: fragments at their hp offsets, zeros elsewhere
// (DeepSpeed's load starts from a zero buffer, §6.4). The tensor shows the first `numel` elements.
absl::StatusOr<const Value*> Planner::Partition(int g, int state, int rank, int64_t numel, bool requires_grad) {
  const Zero12Group& group = in_.groups[g];
  const GroupLayout& l = layouts_[g];
  const int prank = PartitionRank(g, rank);
  const int ep_rank = EpRank(rank);
  DType dtype = DType::kF32;
  for (size_t i = 0; i < group.params.size(); ++i) {
    const Zero3Runs& runs = in_.params[group.params[i]].states[state];
    if (i > 0 && runs.dtype != dtype) {
      return absl::FailedPreconditionError(absl::StrCat(in_.origin, ": group ", g, " mixes ", DTypeName(dtype),
                                                        " and ", DTypeName(runs.dtype)));
    }
    dtype = runs.dtype;
  }
  const uint64_t elem = DTypeSize(dtype);
  std::vector<Piece> pieces;
  int64_t at = 0;
  for (const store::FlatFragment& f : store::FlatRankFragments(l.numels, l.flat, prank)) {
    const Zero12Param& p = in_.params[group.params[f.param]];
    if (f.partition_offset > at) pieces.push_back(Piece{-1, 0, static_cast<uint64_t>(f.partition_offset - at) * elem});
    const int64_t base = p.expert ? static_cast<int64_t>(ep_rank) * l.numels[f.param] : 0;
    UCP_RETURN_IF_ERROR(SliceRuns(p.states[state], static_cast<uint64_t>(base + f.param_offset) * elem,
                                  static_cast<uint64_t>(f.numel) * elem, absl::StrCat("'", p.name, "'"), &pieces));
    at = f.partition_offset + f.numel;
  }
  if (l.flat.partition_size > at) {
    pieces.push_back(Piece{-1, 0, static_cast<uint64_t>(l.flat.partition_size - at) * elem});
  }
  return NewTensor(dtype, numel, l.flat.partition_size, requires_grad, std::move(pieces));
}

const Value* Planner::FragmentAddress(int64_t numel, int64_t start) {
  if (fragment_cls_ == nullptr) fragment_cls_ = arena_.Global("deepspeed.utils.tensor_fragment", "fragment_address");
  Value* obj = arena_.Object(fragment_cls_, arena_.Tuple(), Value::Construction::kNewObj);
  Value* state = arena_.Dict();
  arena_.SetItem(state, "numel", arena_.Int(numel));
  arena_.SetItem(state, "start", arena_.Int(start));
  ValueArena::SetState(obj, state);
  return obj;
}

absl::StatusOr<const Value*> Planner::OptimizerRoot(int rank) {
  const Value& tmpl = *optimizer_template_;
  const int num_groups = static_cast<int>(in_.groups.size());
  // base_optimizer_state: {state: {g: {step, exp_avg, exp_avg_sq}}, param_groups}
  Value* state = arena_.Dict();
  Value* param_groups = arena_.List();
  Value* fp32 = arena_.List();
  Value* paddings = arena_.List();
  Value* counts = arena_.List();
  Value* mappings = arena_.List();
  for (int g = 0; g < num_groups; ++g) {
    const GroupLayout& l = layouts_[g];
    const int prank = PartitionRank(g, rank);
    const int64_t pad = store::FlatRankPadding(l.flat, prank);
    Value* s = arena_.Dict();
    if (in_.groups[g].step != nullptr) arena_.SetItem(s, keys::kStep, in_.groups[g].step);
    UCP_ASSIGN_OR_RETURN(const Value* avg, Partition(g, 1, rank, l.flat.partition_size, false));
    UCP_ASSIGN_OR_RETURN(const Value* avg_sq, Partition(g, 2, rank, l.flat.partition_size, false));
    arena_.SetItem(s, keys::kExpAvg, avg);
    arena_.SetItem(s, keys::kExpAvgSq, avg_sq);
    ValueArena::SetItem(state, arena_.Int(g), s);
    if (in_.groups[g].hyperparameters == nullptr) {
      return absl::DataLossError(absl::StrCat(in_.origin, ": no param_groups entry for group ", g));
    }
    if (in_.zero_stage == 0) {
      UCP_ASSIGN_OR_RETURN(const Value* pg, Zero0ParamGroup(arena_, in_.groups[g].hyperparameters, g, in_.origin));
      ValueArena::Append(param_groups, pg);
    } else {
      ValueArena::Append(param_groups, in_.groups[g].hyperparameters);
    }
    // ZeRO saves the master partition padding-stripped (a view); BF16_Optimizer the whole of it.
    const int64_t fp32_numel = bf16_optimizer_ ? l.flat.partition_size : l.flat.partition_size - pad;
    UCP_ASSIGN_OR_RETURN(const Value* master, Partition(g, 0, rank, fp32_numel, true));
    ValueArena::Append(fp32, master);
    int64_t saved_pad = pad;
    if (bf16_optimizer_) saved_pad = prank == l.world - 1 ? l.flat.aligned - l.flat.total : 0;
    ValueArena::Append(paddings, arena_.Int(saved_pad));
    ValueArena::Append(counts, arena_.Int(l.world));
    Value* m = arena_.OrderedDict();
    for (const store::FlatFragment& f : store::FlatRankFragments(l.numels, l.flat, prank)) {
      arena_.SetItem(m, in_.params[in_.groups[g].params[f.param]].name, FragmentAddress(f.numel, f.partition_offset));
    }
    ValueArena::Append(mappings, m);
  }
  Value* base = arena_.Dict();
  arena_.SetItem(base, keys::kState, state);
  arena_.SetItem(base, keys::kParamGroups, param_groups);

  Value* osd = arena_.Dict();
  auto copy_key = [&](absl::string_view key) -> absl::Status {
    const Value* v = tmpl.Get(key);
    if (v == nullptr) return absl::DataLossError(absl::StrCat(in_.origin, ": optimizer state has no '", key, "'"));
    arena_.SetItem(osd, key, v);
    return absl::OkStatus();
  };
  if (!bf16_optimizer_ && in_.bf16_optimizer) {
    // BF16_Optimizer -> bf16 DeepSpeedZeroOptimizer (ZeRO-2): bf16 runs no loss scaling.
    arena_.SetItem(osd, keys::kLossScaler, StaticLossScaler(arena_));
    arena_.SetItem(osd, keys::kDynamicLossScale, arena_.Bool(false));
    arena_.SetItem(osd, keys::kOverflow, arena_.Bool(false));
  } else if (!bf16_optimizer_) {
    UCP_RETURN_IF_ERROR(copy_key(keys::kLossScaler));
    UCP_RETURN_IF_ERROR(copy_key(keys::kDynamicLossScale));
    UCP_RETURN_IF_ERROR(copy_key(keys::kOverflow));
  }
  UCP_RETURN_IF_ERROR(copy_key(keys::kClipGrad));
  arena_.SetItem(osd, keys::kBaseOptimizerState, base);
  arena_.SetItem(osd, keys::kSinglePartitionOfFp32Groups, fp32);
  if (!bf16_optimizer_ && stage_ == in_.zero_stage && !in_.bf16_optimizer) {
    UCP_RETURN_IF_ERROR(copy_key(keys::kZeroStage));
  } else if (!bf16_optimizer_) {
    arena_.SetItem(osd, keys::kZeroStage, ZeroStageEnumValue(arena_, stage_));
  }
  arena_.SetItem(osd, keys::kGroupPaddings, paddings);
  arena_.SetItem(osd, keys::kPartitionCount, counts);
  UCP_RETURN_IF_ERROR(copy_key(keys::kDsVersion));
  arena_.SetItem(osd, keys::kParamSliceMappings, mappings);
  if (const Value* uci = tmpl.Get(keys::kUniversalCheckpointInfo); uci != nullptr) {
    arena_.SetItem(osd, keys::kUniversalCheckpointInfo, uci);
  }

  Value* root = arena_.Dict();
  arena_.SetItem(root, keys::kOptimizerStateDict, osd);
  if (const Value* c = model_out_->Get(keys::kDsConfig); c != nullptr) arena_.SetItem(root, keys::kDsConfig, c);
  if (const Value* v = in_.model_root->Get(keys::kDsVersion); v != nullptr) arena_.SetItem(root, keys::kDsVersion, v);
  return root;
}

absl::StatusOr<const Value*> Planner::ModelRoot() {
  const std::string what = absl::StrCat(in_.origin, ": model states");
  UCP_ASSIGN_OR_RETURN(const Value* src, ids::AsDict(in_.model_root, what));
  Value* root = CopyDict(arena_, *src);
  if (src->Get(keys::kDpWorldSize) != nullptr) SetOrReplace(arena_, root, keys::kDpWorldSize, arena_.Int(t_.dp));
  if (in_.zero_stage == 0) {
    UCP_RETURN_IF_ERROR(RewriteZero0ModelStates(arena_, root, in_));
    UCP_RETURN_IF_ERROR(Zero0FlatModule(root));
  }
  UCP_RETURN_IF_ERROR(RewriteModelStatesForStage(arena_, root, in_.zero_stage, stage_, what));
  const Value* layers = src->Get(keys::kDsAutoepLayers);
  if (layers == nullptr || layers->is_none()) return root;
  if (const Value* v = src->Get(keys::kParamShapes); v != nullptr && !v->is_none()) {
    UCP_ASSIGN_OR_RETURN(const Value* shapes, ParamShapes(v, absl::StrCat(what, ": ", keys::kParamShapes)));
    SetOrReplace(arena_, root, keys::kParamShapes, shapes);
  }
  UCP_ASSIGN_OR_RETURN(const Value* nl, AutoepLayers(layers, absl::StrCat(what, ": ", keys::kDsAutoepLayers)));
  SetOrReplace(arena_, root, keys::kDsAutoepLayers, nl);
  // DeepSpeed's AutoEP runtime saves its own universal_checkpoint_info: the expert pattern with a
  // leading '.*' and the full layer records (ds_to_universal's rewrite of the UCP copy has neither).
  if (const Value* info = src->Get(keys::kUniversalCheckpointInfo); info != nullptr && info->is_dict()) {
    Value* ni = CopyDict(arena_, *info);
    SetOrReplace(arena_, ni, keys::kExpertParameterPatterns, arena_.List({arena_.Str(".*\\.experts\\.w[123]$")}));
    SetOrReplace(arena_, ni, keys::kDsAutoepLayers, nl);
    SetOrReplace(arena_, root, keys::kUniversalCheckpointInfo, ni);
  }
  return root;
}

absl::StatusOr<Plan> Planner::Run() {
  for (const Zero12Group& g : in_.groups) {
    GroupLayout l;
    l.world = g.expert ? edp_ : t_.dp;
    for (int pi : g.params) {
      const Zero12Param& p = in_.params[pi];
      const int64_t n = p.shape.NumElements().value_or(0);
      l.numels.push_back(p.expert ? n * in_.source_ep / ep_ : n);
    }
    l.flat = store::MakeFlatLayout(l.numels, l.world);
    layouts_.push_back(std::move(l));
  }
  Plan plan;
  plan.info.pipeline = "reshard_zero12";
  plan.info.input = in_.origin;
  plan.info.wrapper = bf16_optimizer_ ? "BF16_Optimizer" : "DeepSpeedZeroOptimizer";
  plan.info.zero_stage = stage_;
  plan.info.dp_size = t_.dp;
  plan.info.ep_size = ep_;
  plan.info.param_groups = static_cast<int>(in_.groups.size());
  plan.info.params = static_cast<int>(in_.params.size());
  plan.info.frozen_params = in_.frozen_params;
  for (const Zero12Param& p : in_.params) plan.info.expert_params += p.expert ? 1 : 0;
  if (!in_.params.empty()) {
    plan.info.master_dtype = std::string(DTypeName(in_.params[0].states[0].dtype));
    plan.info.state_dtype = std::string(DTypeName(in_.params[0].states[1].dtype));
  }
  for (const auto& f : in_.files) plan.sources.push_back(PlanSource{f->name(), f->zip().source().Size()});
  // Padding zeros: a source at a fixed index (sized at the end); expert files may add cast sources.
  frames_.ReserveZeros(&plan);

  // A ZeRO-0 source has no ZeRO wrapper state: a fresh DeepSpeedZeroOptimizer's.
  optimizer_template_ =
      in_.zero_stage == 0 ? Zero0OptimizerTemplate(arena_, *in_.model_root) : in_.optimizer_template;
  UCP_ASSIGN_OR_RETURN(const Value* model, ModelRoot());
  model_out_ = model;
  UCP_ASSIGN_OR_RETURN(PlanFile mf, frames_.Frame("mp_rank_00_model_states.pt", FileRole::kModelRewrite, *model));
  plan.files.push_back(std::move(mf));
  UCP_RETURN_IF_ERROR(ExpertFiles(&plan));
  // bf16 runs name their shards bf16_zero_pp_rank_* (§1.2), with either wrapper.
  bool bf16 = in_.bf16_optimizer;
  if (const Value* c = in_.model_root->Get(keys::kDsConfig); c != nullptr && c->is_dict()) {
    for (absl::string_view k : {"bf16", "bfloat16"}) {
      const Value* b = c->Get(k);
      const Value* en = b != nullptr && b->is_dict() ? b->Get("enabled") : nullptr;
      if (en != nullptr && en->is(ValueKind::kBool) && en->bool_value()) bf16 = true;
    }
  }
  for (int r = 0; r < t_.dp; ++r) {
    UCP_ASSIGN_OR_RETURN(const Value* optim, OptimizerRoot(r));
    UCP_ASSIGN_OR_RETURN(PlanFile of, frames_.Frame(absl::StrCat(bf16 ? "bf16_" : "", "zero_pp_rank_", r,
                                                         "_mp_rank_00_optim_states.pt"),
                                            FileRole::kOptimizerState, *optim));
    plan.files.push_back(std::move(of));
  }
  frames_.FinishZeros(&plan);
  UCP_RETURN_IF_ERROR(ValidatePlan(plan));
  return plan;
}

}  // namespace internal_zero12

absl::StatusOr<Plan> PlanUcpToZero12(const Zero12Input& input, const ReshardTarget& target) {
  bool autoep = false;
  for (const Zero12Param& p : input.params) autoep = autoep || p.expert;
  const int ep = target.autoep_size > 0 ? target.autoep_size : input.source_ep;
  if (target.dp < 1) return absl::InvalidArgumentError(absl::StrCat("target dp ", target.dp, " must be >= 1"));
  UCP_RETURN_IF_ERROR(CheckStageChange(input.origin, input.zero_stage, target.zero_stage));
  if (!input.native_moe_num_experts.empty() && ep != input.source_ep) {
    return absl::InvalidArgumentError(absl::StrCat(
        input.origin, ": native DeepSpeed MoE with ep_size ", input.source_ep, ", target ", ep,
        ": the model fixes its ep_size (MoE(ep_size=...)) and DeepSpeed cannot load it at another"));
  }
  if (!autoep && ep != 1) {
    return absl::InvalidArgumentError(absl::StrCat(input.origin, ": autoep_size ", ep,
                                                   " requested, but the checkpoint has no AutoEP layers"));
  }
  if (target.dp % ep != 0) {
    return absl::InvalidArgumentError(absl::StrCat("target dp ", target.dp, " is not a multiple of autoep_size ", ep));
  }
  for (const Zero12Param& p : input.params) {
    if (p.expert && p.num_experts % ep != 0) {
      return absl::InvalidArgumentError(absl::StrCat("'", p.name, "': ", p.num_experts,
                                                     " experts are not divisible by autoep_size ", ep));
    }
  }
  internal_zero12::Planner planner(input, target, ep);
  return planner.Run();
}

}  // namespace ucp::converters::plan
