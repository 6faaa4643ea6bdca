#include "converters/sinks/zero/stage_change.h"

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "converters/plan/tree_edit.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"

namespace ucp::converters::sinks {
namespace {

namespace keys = formats::deepspeed::keys;
using formats::torch::TensorRef;
using formats::torch::Value;
using formats::torch::ValueArena;
using formats::torch::ValueKind;
using plan::CopyDict;
using plan::SetOrReplace;
using plan::TorchSize;

void AddStrings(const Value* v, absl::flat_hash_set<std::string>* out) {
  if (v == nullptr) return;
  if (v->is(ValueKind::kList) || v->is(ValueKind::kTuple)) {
    for (const Value* item : v->items()) {
      if (item->is(ValueKind::kStr)) out->insert(item->str());
    }
  }
}

void AddDictKeys(const Value* v, absl::flat_hash_set<std::string>* out) {
  if (v == nullptr || !v->is_dict()) return;
  for (const auto& [k, unused] : v->entries()) {
    if (k->is(ValueKind::kStr)) out->insert(k->str());
  }
}

// frozen_param_shapes and frozen_param_fragments as a ZeRO-2 save writes them.
absl::Status AddFrozenParams(ValueArena& arena, Value* root, absl::string_view what) {
  const Value* module = root->Get(keys::kModule);
  if (module == nullptr || !module->is_dict()) {
    return absl::DataLossError(
        absl::StrCat(what, ": no module state dict to take the frozen parameters from"));
  }
  absl::flat_hash_set<std::string> not_frozen;
  if (const Value* shapes = root->Get(keys::kParamShapes);
      shapes != nullptr && shapes->is(ValueKind::kList)) {
    for (const Value* group : shapes->items()) AddDictKeys(group, &not_frozen);
  } else {
    return absl::DataLossError(absl::StrCat(what, ": no param_shapes list"));
  }
  AddStrings(root->Get(keys::kBufferNames), &not_frozen);
  AddDictKeys(root->Get(keys::kSharedParams), &not_frozen);
  // A second name of a trainable parameter's very tensor (AutoEP's mlp.gate alias of
  // mlp.router, which shared_params does not list) is not a frozen parameter either.
  auto same_tensor = [](const TensorRef& a, const TensorRef& b) {
    return a.storage == b.storage && a.storage_offset == b.storage_offset && a.shape == b.shape;
  };
  std::vector<TensorRef> trainable;
  for (const auto& [k, v] : module->entries()) {
    if (k->is(ValueKind::kStr) && v->is(ValueKind::kTensor) && not_frozen.contains(k->str()))
      trainable.push_back(v->tensor());
  }
  Value* shapes = arena.OrderedDict();
  Value* fragments = arena.OrderedDict();
  for (const auto& [k, v] : module->entries()) {
    if (!k->is(ValueKind::kStr) || not_frozen.contains(k->str())) continue;
    bool alias = false;
    for (const TensorRef& t : trainable)
      alias = alias || (v->is(ValueKind::kTensor) && same_tensor(t, v->tensor()));
    if (alias) continue;
    if (!v->is(ValueKind::kTensor)) {
      return absl::DataLossError(
          absl::StrCat(what, ": module entry '", k->str(), "' is not a tensor"));
    }
    ValueArena::SetItem(shapes, k, TorchSize(arena, v->tensor().shape));
    // DeepSpeed stores the parameter itself: the same storage as the module entry.
    TensorRef t = v->tensor();
    ValueArena::SetItem(fragments, k, arena.Tensor(std::move(t)));
  }
  SetOrReplace(arena, root, keys::kFrozenParamShapes, shapes);
  SetOrReplace(arena, root, keys::kFrozenParamFragments, fragments);
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckStageChange(absl::string_view origin, int from, int to) {
  if (from == 0 && to < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin,
                     ": a ZeRO-0 checkpoint has no optimizer shards to "
                     "reshard: choose the target with --zero-stage 1 or 2"));
  }
  if (to < 0 || (to == from && from != 0)) return absl::OkStatus();
  if ((from >= 0 && from <= 2) && (to == 1 || to == 2)) return absl::OkStatus();
  if (to > 3)
    return absl::InvalidArgumentError(absl::StrCat("ZeRO stage ", to, " does not exist (0-3)"));
  std::string why;
  if (to == 0) {
    why =
        "ZeRO-0 keeps the whole optimizer in the model-states file and DeepSpeed has no universal "
        "load at "
        "ZeRO-0; write ZeRO-1 (dp 1 if one file is wanted) or convert to a UCP";
  } else {
    why =
        "ZeRO-3 saves a partitioned module in per-rank zero_pp_rank_*_model_states.pt files, "
        "ZeRO-1/2 one whole "
        "mp_rank_00_model_states.pt; DeepSpeed's universal loader reads only the kind its source "
        "wrote and fails "
        "across the two (checked with DeepSpeed 0.19.6)";
  }
  return absl::InvalidArgumentError(absl::StrCat(
      origin, ": ZeRO-", from, " checkpoint, target ZeRO-", to, ": not supported: ", why));
}

const Value* ZeroStageEnumValue(ValueArena& arena, int stage) {
  const Value* getattr = arena.Global("__builtin__", "getattr");
  const Value* cls =
      arena.Global(std::string(keys::kZeroConfigModule), std::string(keys::kZeroStageEnum));
  return arena.Object(getattr,
                      arena.Tuple({cls, arena.Str(std::string(keys::kZeroStageNames[stage]))}),
                      Value::Construction::kReduce);
}

const Value* StaticLossScaler(ValueArena& arena) {
  Value* obj = arena.Object(arena.Global("deepspeed.runtime.fp16.loss_scaler", "LossScaler"),
                            arena.Tuple(), Value::Construction::kNewObj);
  Value* state = arena.Dict();
  arena.SetItem(state, "cur_scale", arena.Float(1.0));
  arena.SetItem(state, "dynamic", arena.Bool(false));
  ValueArena::SetState(obj, state);
  return obj;
}

absl::Status RewriteModelStatesForStage(ValueArena& arena, Value* root, int from, int to,
                                        absl::string_view what) {
  if (to < 0 || to == from) return absl::OkStatus();
  if (to == 1) {
    if (root->Get(keys::kFrozenParamShapes) != nullptr)
      SetOrReplace(arena, root, keys::kFrozenParamShapes, arena.None());
    if (root->Get(keys::kFrozenParamFragments) != nullptr) {
      SetOrReplace(arena, root, keys::kFrozenParamFragments, arena.None());
    }
  } else if (to == 2) {
    UCP_RETURN_IF_ERROR(AddFrozenParams(arena, root, what));
  }
  // The config the checkpoint was saved under names its stage; keep it true.
  if (const Value* cfg = root->Get(keys::kDsConfig); cfg != nullptr && cfg->is_dict()) {
    const Value* zo = cfg->Get("zero_optimization");
    if (zo != nullptr && zo->is_dict() && zo->Get("stage") != nullptr) {
      Value* new_zo = CopyDict(arena, *zo);
      SetOrReplace(arena, new_zo, "stage", arena.Int(to));
      Value* new_cfg = CopyDict(arena, *cfg);
      SetOrReplace(arena, new_cfg, "zero_optimization", new_zo);
      SetOrReplace(arena, root, keys::kDsConfig, new_cfg);
    }
  }
  return absl::OkStatus();
}

absl::Status RewriteZero0ModelStates(ValueArena& arena, Value* root, const ZeroSinkInput& in) {
  SetOrReplace(arena, root, keys::kOptimizer, arena.None());
  Value* shapes = arena.List();
  // DeepSpeed's AutoEP engines record plain tuples (the shapes of its filtered state_dict).
  const Value* autoep = root->Get(keys::kDsAutoepLayers);
  const bool tuples = autoep != nullptr && !autoep->is_none();
  for (const SinkGroup& g : in.groups) {
    Value* od = arena.OrderedDict();
    for (int pi : g.params) {
      arena.SetItem(od, in.params[pi].name,
                    plan::ParamShapeValue(arena, in.params[pi].shape, tuples));
    }
    ValueArena::Append(shapes, od);
  }
  SetOrReplace(arena, root, keys::kParamShapes, shapes);
  Value* shared = arena.Dict();
  for (const auto& [alias, stored] : in.shared_params)
    arena.SetItem(shared, alias, arena.Str(stored));
  SetOrReplace(arena, root, keys::kSharedParams, shared);
  return absl::OkStatus();
}

const Value* Zero0OptimizerTemplate(ValueArena& arena, const Value& model_root) {
  Value* t = arena.Dict();
  arena.SetItem(t, keys::kLossScaler, StaticLossScaler(arena));
  arena.SetItem(t, keys::kDynamicLossScale, arena.Bool(false));
  arena.SetItem(t, keys::kOverflow, arena.Bool(false));
  double clip = 0.0;  // DeepSpeed's default gradient_clipping
  if (const Value* cfg = model_root.Get(keys::kDsConfig); cfg != nullptr && cfg->is_dict()) {
    const Value* c = cfg->Get("gradient_clipping");
    if (c != nullptr && c->is(ValueKind::kFloat)) clip = c->float_value();
    if (c != nullptr && c->is(ValueKind::kInt)) clip = static_cast<double>(c->int_value());
  }
  arena.SetItem(t, keys::kClipGrad, arena.Float(clip));
  if (const Value* v = model_root.Get(keys::kDsVersion); v != nullptr)
    arena.SetItem(t, keys::kDsVersion, v);
  return t;
}

absl::StatusOr<const Value*> Zero0ParamGroup(ValueArena& arena, const Value* group, int g,
                                             absl::string_view what) {
  if (group == nullptr || !group->is_dict()) {
    return absl::DataLossError(absl::StrCat(what, ": param group ", g, " is not a dict"));
  }
  Value* out = CopyDict(arena, *group);
  SetOrReplace(arena, out, keys::kParams, arena.List({arena.Int(g)}));
  return out;
}

}  // namespace ucp::converters::sinks
