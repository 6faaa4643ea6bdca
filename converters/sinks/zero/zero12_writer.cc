// The ZeRO-1/2 / BF16_Optimizer writer of the ZeRO sink (docs/reshard.md "ZeRO-1/2"): per target
// rank the optimizer shard DeepSpeed saves after a universal load at that topology (§3, §6.4),
// plus the mp_rank_00 model-states file (the source's, dp_world_size updated; for a whole-tensor
// input, ZeRO-0 or memory, the module rebuilt as flat-group views).
#include "converters/sinks/zero/zero12_writer.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "converters/plan/tree_edit.h"
#include "converters/sinks/zero/stage_change.h"
#include "converters/sinks/zero/zero_writers.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/file_names.h"
#include "formats/deepspeed/value_access.h"
#include "ucp/shard_layout.h"
#include "ucp/torch_frame.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::sinks {
namespace internal_zero12 {

namespace keys = formats::deepspeed::keys;
namespace ids = formats::deepspeed;
using plan::CopyDict;
using plan::CopyOp;
using plan::FileRole;
using plan::Region;
using plan::SetOrReplace;

// ZeRO-0 (or memory) -> ZeRO-1/2: a ZeRO module's parameters are views of one flat buffer per
// param group, laid out and padded like the flat partitions (§3), where a ZeRO-0 module has a
// storage per tensor. Tied aliases view their parameter; frozen parameters and buffers keep their
// storages.
// The module weight of group g's parameter i: its `weight` runs, else its module tensor's storage.
absl::Status Planner::ModuleWeight(const Value& module, int g, size_t i, std::vector<Piece>* pieces,
                                   TensorRef* view) {
  const SinkParam& p = in_.params[in_.groups[g].params[i]];
  const int64_t numel = layouts_[g].spec().numels[i];
  const Value* v = module.Get(p.name);
  if (p.weight.has_value()) {  // whole tensors built for this input (tp merge)
    if (v == nullptr || !v->is(ValueKind::kTensor)) {
      return absl::DataLossError(absl::StrCat(in_.origin, ": module has no tensor '", p.name, "'"));
    }
    *view = v->tensor();
    view->shape = p.shape;
    view->dtype = p.weight->dtype;
    const uint64_t size = static_cast<uint64_t>(numel) * DTypeSize(p.weight->dtype);
    return plan::SliceRuns(*p.weight, 0, size, in_.origin, absl::StrCat("module '", p.name, "'"),
                           pieces);
  }
  if (v == nullptr || !v->is(ValueKind::kTensor) || !v->tensor().IsContiguous() ||
      v->tensor().NumElements() != numel) {
    return absl::DataLossError(absl::StrCat(in_.origin, ": module has no contiguous tensor '",
                                            p.name, "' of ", numel, " elements"));
  }
  const TensorRef& t = v->tensor();
  auto run = in_.storage_runs.find(t.storage);
  const uint64_t elem = DTypeSize(t.dtype);
  const uint64_t begin = static_cast<uint64_t>(t.storage_offset) * elem, size = numel * elem;
  if (run == in_.storage_runs.end() || begin + size > run->second.size) {
    return absl::DataLossError(
        absl::StrCat(in_.origin, ": module tensor '", p.name, "' is not readable"));
  }
  if (size > 0) pieces->push_back(Piece{run->second.file, run->second.offset + begin, size});
  *view = t;
  return absl::OkStatus();
}

absl::Status Planner::Zero0FlatModule(Value* root) {
  const Value* module = root->Get(keys::kModule);
  if (module == nullptr || !module->is_dict()) {
    return absl::DataLossError(absl::StrCat(in_.origin, ": model states: no module state dict"));
  }
  Value* out = CopyDict(arena_, *module);
  absl::flat_hash_map<std::string, TensorRef> views;
  for (size_t g = 0; g < in_.groups.size(); ++g) {
    const ucp::ShardLayout& l = layouts_[g];
    std::vector<Piece> pieces;
    int64_t at = 0;
    DType dtype = DType::kF32;
    for (size_t i = 0; i < in_.groups[g].params.size(); ++i) {
      TensorRef view;
      UCP_RETURN_IF_ERROR(ModuleWeight(*module, static_cast<int>(g), i, &pieces, &view));
      if (i > 0 && view.dtype != dtype) {
        return absl::DataLossError(absl::StrCat(in_.origin, ": module tensors of group ", g,
                                                " mix ", DTypeName(dtype), " and ",
                                                DTypeName(view.dtype)));
      }
      dtype = view.dtype;
      view.storage_offset = at;
      view.stride = view.shape.ContiguousStrides();
      views[in_.params[in_.groups[g].params[i]].name] = view;
      at += l.spec().numels[i];
    }
    if (l.flat_length() > at) {
      pieces.push_back(
          Piece{-1, 0, static_cast<uint64_t>(l.flat_length() - at) * DTypeSize(dtype)});
    }
    const StorageRef* flat = frames_.NewStorage(dtype, l.flat_length(), std::move(pieces));
    for (int pi : in_.groups[g].params) views[in_.params[pi].name].storage = flat;
  }
  for (const auto& [alias, stored] : in_.shared_params) {
    if (auto it = views.find(stored); it != views.end()) views[alias] = it->second;
  }
  for (size_t i = 0; i < out->entries().size(); ++i) {
    const Value* k = out->entries()[i].first;
    if (!k->is(ValueKind::kStr)) continue;
    if (auto it = views.find(k->str()); it != views.end())
      ValueArena::ReplaceValue(out, i, arena_.Tensor(it->second));
  }
  SetOrReplace(arena_, root, keys::kModule, out);
  return absl::OkStatus();
}

// Rank `rank`'s partition of group g for one state: fragments at their hp offsets, zeros elsewhere
// (DeepSpeed's load starts from a zero buffer, §6.4). The tensor shows the first `numel` elements.
absl::StatusOr<const Value*> Planner::Partition(int g, int state, int rank, int64_t numel,
                                                bool requires_grad) {
  DType dtype = DType::kF32;
  UCP_ASSIGN_OR_RETURN(std::vector<Piece> pieces,
                       internal_sink::PartitionPieces(in_, layouts_[g], g, state, rank, &dtype));
  return NewTensor(dtype, numel, layouts_[g].partition_size(), requires_grad, std::move(pieces));
}

const Value* Planner::FragmentAddress(int64_t numel, int64_t start) {
  if (fragment_cls_ == nullptr)
    fragment_cls_ = arena_.Global("deepspeed.utils.tensor_fragment", "fragment_address");
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
    const ucp::ShardLayout& l = layouts_[g];
    const ucp::RankShard shard = l.Shard(rank);
    Value* s = arena_.Dict();
    if (in_.groups[g].step != nullptr) arena_.SetItem(s, keys::kStep, in_.groups[g].step);
    UCP_ASSIGN_OR_RETURN(const Value* avg, Partition(g, 1, rank, shard.size, false));
    UCP_ASSIGN_OR_RETURN(const Value* avg_sq, Partition(g, 2, rank, shard.size, false));
    arena_.SetItem(s, keys::kExpAvg, avg);
    arena_.SetItem(s, keys::kExpAvgSq, avg_sq);
    ValueArena::SetItem(state, arena_.Int(g), s);
    if (in_.groups[g].hyperparameters == nullptr) {
      return absl::DataLossError(absl::StrCat(in_.origin, ": no param_groups entry for group ", g));
    }
    if (in_.zero_stage == 0) {
      UCP_ASSIGN_OR_RETURN(const Value* pg,
                           Zero0ParamGroup(arena_, in_.groups[g].hyperparameters, g, in_.origin));
      ValueArena::Append(param_groups, pg);
    } else {
      ValueArena::Append(param_groups, in_.groups[g].hyperparameters);
    }
    // ZeRO saves the master partition padding-stripped (a view); BF16_Optimizer the whole of it.
    const int64_t fp32_numel = bf16_optimizer_ ? shard.size : shard.size - shard.padding;
    UCP_ASSIGN_OR_RETURN(const Value* master, Partition(g, 0, rank, fp32_numel, true));
    ValueArena::Append(fp32, master);
    ValueArena::Append(paddings, arena_.Int(shard.SavedPadding(bf16_optimizer_)));
    ValueArena::Append(counts, arena_.Int(shard.world));
    Value* m = arena_.OrderedDict();
    for (const ucp::ShardPiece& f : shard.pieces) {
      arena_.SetItem(m, in_.params[in_.groups[g].params[f.param]].name,
                     FragmentAddress(f.numel, f.partition_offset));
    }
    ValueArena::Append(mappings, m);
  }
  Value* base = arena_.Dict();
  arena_.SetItem(base, keys::kState, state);
  arena_.SetItem(base, keys::kParamGroups, param_groups);

  Value* osd = arena_.Dict();
  auto copy_key = [&](absl::string_view key) -> absl::Status {
    const Value* v = tmpl.Get(key);
    if (v == nullptr)
      return absl::DataLossError(absl::StrCat(in_.origin, ": optimizer state has no '", key, "'"));
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
  if (const Value* c = model_out_->Get(keys::kDsConfig); c != nullptr)
    arena_.SetItem(root, keys::kDsConfig, c);
  if (const Value* v = in_.model_root->Get(keys::kDsVersion); v != nullptr)
    arena_.SetItem(root, keys::kDsVersion, v);
  return root;
}

absl::StatusOr<const Value*> Planner::ModelRoot() {
  const std::string what = absl::StrCat(in_.origin, ": model states");
  UCP_ASSIGN_OR_RETURN(const Value* src, ids::AsDict(in_.model_root, what));
  Value* root = CopyDict(arena_, *src);
  if (src->Get(keys::kDpWorldSize) != nullptr)
    SetOrReplace(arena_, root, keys::kDpWorldSize, arena_.Int(topo_.dp));
  if (t_.ds_config != nullptr) SetOrReplace(arena_, root, keys::kDsConfig, t_.ds_config);
  if (in_.module_per_tensor) {
    UCP_RETURN_IF_ERROR(RewriteZero0ModelStates(arena_, root, in_));
    // DeepSpeed's AutoEP module is a filtered copy of the state_dict (one storage per tensor,
    // experts left out), not views of the flat groups.
    const Value* autoep = src->Get(keys::kDsAutoepLayers);
    if (autoep == nullptr || autoep->is_none()) UCP_RETURN_IF_ERROR(Zero0FlatModule(root));
  }
  UCP_RETURN_IF_ERROR(RewriteModelStatesForStage(arena_, root, in_.zero_stage, stage_, what));
  const Value* layers = src->Get(keys::kDsAutoepLayers);
  if (layers == nullptr || layers->is_none()) return root;
  // The param_shapes written (a memory source's are made above, from whole expert tensors).
  if (const Value* v = root->Get(keys::kParamShapes); v != nullptr && !v->is_none()) {
    UCP_ASSIGN_OR_RETURN(const Value* shapes,
                         ParamShapes(v, absl::StrCat(what, ": ", keys::kParamShapes)));
    SetOrReplace(arena_, root, keys::kParamShapes, shapes);
  }
  UCP_ASSIGN_OR_RETURN(const Value* nl,
                       AutoepLayers(layers, absl::StrCat(what, ": ", keys::kDsAutoepLayers)));
  SetOrReplace(arena_, root, keys::kDsAutoepLayers, nl);
  // DeepSpeed's AutoEP runtime saves its own universal_checkpoint_info: the expert pattern with a
  // leading '.*' and the full layer records (ds_to_universal's rewrite of the UCP copy has
  // neither).
  if (const Value* info = src->Get(keys::kUniversalCheckpointInfo);
      info != nullptr && info->is_dict()) {
    Value* ni = CopyDict(arena_, *info);
    SetOrReplace(arena_, ni, keys::kExpertParameterPatterns,
                 arena_.List({arena_.Str(".*\\.experts\\.w[123]$")}));
    SetOrReplace(arena_, ni, keys::kDsAutoepLayers, nl);
    SetOrReplace(arena_, root, keys::kUniversalCheckpointInfo, ni);
  }
  return root;
}

absl::StatusOr<Plan> Planner::Run() {
  for (size_t g = 0; g < in_.groups.size(); ++g) {
    layouts_.push_back(
        internal_sink::TargetLayout(in_, t_, static_cast<int>(g), ucp::PartitionKind::kFlat));
  }
  Plan plan = internal_sink::NewSinkPlan(
      in_, t_, stage_, bf16_optimizer_ ? "BF16_Optimizer" : "DeepSpeedZeroOptimizer");
  // Padding zeros: a source at a fixed index (sized at the end); expert files may add cast sources.
  frames_.ReserveZeros(&plan);
  // A whole-tensor source without the ZeRO wrapper's state gets a fresh DeepSpeedZeroOptimizer's.
  optimizer_template_ = in_.optimizer_template;
  if (optimizer_template_ == nullptr)
    optimizer_template_ = Zero0OptimizerTemplate(arena_, *in_.model_root);
  UCP_ASSIGN_OR_RETURN(const Value* model, ModelRoot());
  model_out_ = model;
  UCP_ASSIGN_OR_RETURN(PlanFile mf,
                       frames_.Frame(formats::deepspeed::ModelStatesFileName(in_.mp_rank),
                                     FileRole::kModelRewrite, *model));
  plan.files.push_back(std::move(mf));
  UCP_RETURN_IF_ERROR(ExpertFiles(&plan));
  for (int r = 0; r < topo_.dp; ++r) {
    UCP_ASSIGN_OR_RETURN(const Value* optim, OptimizerRoot(r));
    UCP_ASSIGN_OR_RETURN(PlanFile of, frames_.Frame(internal_sink::OptimizerFileName(in_, t_, r),
                                                    FileRole::kOptimizerState, *optim));
    plan.files.push_back(std::move(of));
  }
  frames_.FinishZeros(&plan);
  UCP_RETURN_IF_ERROR(plan::ValidatePlan(plan));
  return plan;
}

}  // namespace internal_zero12

namespace internal_sink {

absl::StatusOr<plan::Plan> PlanZero12(const ZeroSinkInput& in, const ZeroTarget& target,
                                      int stage) {
  internal_zero12::Planner planner(in, target, stage);
  return planner.Run();
}

}  // namespace internal_sink
}  // namespace ucp::converters::sinks
