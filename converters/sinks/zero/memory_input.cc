#include "converters/sinks/zero/memory_input.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "converters/plan/tree_edit.h"
#include "converters/sinks/zero/stage_change.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/torch/pickle_tree_check.h"

namespace ucp::converters::sinks {
namespace {

namespace keys = formats::deepspeed::keys;
using formats::torch::TensorRef;
using formats::torch::ValueArena;
using formats::torch::ValueKind;

// One tensor of the checkpoint inside the memory source: callback bytes or a buffer.
struct Segment {
  uint64_t offset = 0;
  uint64_t size = 0;
  int param = -1;  // >= 0: served by the callback
  MemoryTensor which = MemoryTensor::kWeight;
  Buffer buffer;  // param < 0
};

// The whole memory checkpoint as one ByteSource: every tensor one after another. Reads are
// forwarded to the callback (or copied from the buffers), segment by segment.
class MemoryCheckpointSource : public ByteSource {
 public:
  MemoryCheckpointSource(std::string name, MemoryReadFn read)
      : name_(std::move(name)), read_(std::move(read)) {}

  // Appends a segment of `size` bytes; returns its offset.
  uint64_t Add(Segment s) {
    const uint64_t at = size_;
    s.offset = at;
    size_ += s.size;
    if (s.size > 0) segments_.push_back(std::move(s));
    return at;
  }

  uint64_t Size() const override { return size_; }
  const std::string& name() const override { return name_; }

  absl::Status ReadAt(uint64_t offset, absl::Span<std::byte> out) const override {
    if (offset > size_ || out.size() > size_ - offset) {
      return absl::OutOfRangeError(
          absl::StrCat(name_, ": read of ", out.size(), " bytes at ", offset, " past ", size_));
    }
    if (out.empty()) return absl::OkStatus();
    auto it = std::upper_bound(segments_.begin(), segments_.end(), offset,
                               [](uint64_t at, const Segment& s) { return at < s.offset; });
    size_t done = 0;
    for (--it; done < out.size(); ++it) {
      const uint64_t at = offset + done - it->offset;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(it->size - at, out.size() - done));
      absl::Span<std::byte> dest = out.subspan(done, n);
      if (it->param >= 0) {
        UCP_RETURN_IF_ERROR(read_(it->param, it->which, at, dest));
      } else {
        std::memcpy(dest.data(), it->buffer.data() + at, n);
      }
      done += n;
    }
    return absl::OkStatus();
  }

 private:
  std::string name_;
  MemoryReadFn read_;
  std::vector<Segment> segments_;  // by offset, none empty
  uint64_t size_ = 0;
};

// What the builder needs while it works.
struct Builder {
  const MemoryCheckpoint& ck;
  ZeroSinkInput* in;
  ValueArena* arena;
  MemoryCheckpointSource* source;

  // A run of a new segment (callback bytes of `param`'s `which`, `dtype` elements of its shape).
  absl::StatusOr<ucp::ByteRun> AddTensor(int param, MemoryTensor which, DType dtype) {
    UCP_ASSIGN_OR_RETURN(uint64_t size, ck.params[param].shape.NumBytes(dtype));
    Segment s;
    s.size = size;
    s.param = param;
    s.which = which;
    const uint64_t at = source->Add(std::move(s));
    return ucp::ByteRun{0, at, size};
  }
};

absl::Status CheckParams(const MemoryCheckpoint& ck) {
  if (ck.model_states == nullptr || !ck.model_states->is_dict() || !ck.read) {
    return absl::InvalidArgumentError(
        absl::StrCat(ck.name, ": a memory checkpoint needs model_states and read"));
  }
  absl::flat_hash_map<std::string, int> by_name;
  for (size_t i = 0; i < ck.params.size(); ++i) {
    if (!by_name.emplace(ck.params[i].name, static_cast<int>(i)).second ||
        ck.params[i].name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          ck.name, ": parameter name '", ck.params[i].name, "' is empty or used twice"));
    }
  }
  std::vector<int> seen(ck.params.size(), 0);
  for (size_t g = 0; g < ck.groups.size(); ++g) {
    for (int p : ck.groups[g].params) {
      if (p < 0 || p >= static_cast<int>(ck.params.size()) ||
          ck.params[p].role != MemoryParamRole::kTrainable ||
          ck.params[p].group != static_cast<int>(g) || seen[p]++ > 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(ck.name, ": group ", g, " lists parameter ", p,
                         ", which is not a trainable parameter of that group"));
      }
    }
  }
  for (size_t i = 0; i < ck.params.size(); ++i) {
    const MemoryParam& p = ck.params[i];
    if (p.role == MemoryParamRole::kTrainable && seen[i] != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(ck.name, ": trainable '", p.name, "' is in no group's params"));
    }
    auto t = by_name.find(p.tied_to);
    if (p.role == MemoryParamRole::kTied &&
        (t == by_name.end() || ck.params[t->second].role == MemoryParamRole::kTied)) {
      return absl::InvalidArgumentError(absl::StrCat(ck.name, ": '", p.name, "' is tied to '",
                                                     p.tied_to, "', which is not a parameter"));
    }
  }
  return absl::OkStatus();
}

// The module: one contiguous tensor per parameter, over its own storage served by the callback
// (tied aliases share their parameter's tensor), with the skeleton module's attributes.
absl::StatusOr<Value*> BuildModule(Builder& b, const Value* skeleton_module) {
  const MemoryCheckpoint& ck = b.ck;
  Value* module = b.arena->OrderedDict();
  if (skeleton_module != nullptr && skeleton_module->state() != nullptr) {
    ValueArena::SetState(module, skeleton_module->state());
  }
  std::vector<const Value*> tensors(ck.params.size(), nullptr);
  absl::flat_hash_map<std::string, int> by_name;
  for (size_t i = 0; i < ck.params.size(); ++i) {
    by_name[ck.params[i].name] = static_cast<int>(i);
    const MemoryParam& p = ck.params[i];
    if (p.role == MemoryParamRole::kTied) continue;
    UCP_ASSIGN_OR_RETURN(ucp::ByteRun run,
                         b.AddTensor(static_cast<int>(i), MemoryTensor::kWeight, p.weight_dtype));
    UCP_ASSIGN_OR_RETURN(int64_t numel, p.shape.NumElements());
    const StorageRef* storage =
        b.arena->NewStorage(StorageRef{"0", p.weight_dtype, "cpu", numel, false, std::nullopt});
    b.in->storage_runs[storage] = run;
    TensorRef t;
    t.storage = storage;
    t.dtype = p.weight_dtype;
    t.shape = p.shape;
    t.stride = p.shape.ContiguousStrides();
    tensors[i] = b.arena->Tensor(std::move(t));
  }
  for (size_t i = 0; i < ck.params.size(); ++i) {
    const MemoryParam& p = ck.params[i];
    const Value* t = p.role == MemoryParamRole::kTied ? tensors[by_name[p.tied_to]] : tensors[i];
    b.arena->SetItem(module, p.name, t);
    if (p.role == MemoryParamRole::kTied && p.shared_param)
      b.in->shared_params.emplace_back(p.name, p.tied_to);
  }
  return module;
}

// Every tensor inside `v` must have bytes (a storage of `storages`, now located).
absl::Status CheckTensorsHaveBytes(const ZeroSinkInput& in, const Value* v,
                                   absl::string_view what) {
  if (v == nullptr) return absl::OkStatus();
  std::vector<const Value*> stack{v};
  absl::flat_hash_set<const Value*> seen;
  while (!stack.empty()) {
    const Value* x = stack.back();
    stack.pop_back();
    if (!seen.insert(x).second) continue;
    if (x->is(ValueKind::kTensor) && !in.storage_runs.contains(x->tensor().storage)) {
      return absl::InvalidArgumentError(absl::StrCat(
          in.origin, ": a tensor in ", what, " has no bytes (add its storage to `storages`)"));
    }
    formats::torch::ForEachChild(*x, [&](const Value* c) { stack.push_back(c); });
  }
  return absl::OkStatus();
}

// The groups and their parameters' optimizer states, in flat order.
absl::Status BuildParams(Builder& b) {
  const MemoryCheckpoint& ck = b.ck;
  for (size_t g = 0; g < ck.groups.size(); ++g) {
    SinkGroup group;
    group.step = ck.groups[g].step;
    group.hyperparameters = ck.groups[g].hyperparameters;
    if (group.hyperparameters == nullptr || !group.hyperparameters->is_dict()) {
      return absl::InvalidArgumentError(
          absl::StrCat(ck.name, ": group ", g, " has no hyper-parameters dict"));
    }
    for (int pi : ck.groups[g].params) {
      SinkParam p;
      p.name = ck.params[pi].name;
      p.shape = ck.params[pi].shape;
      p.group = static_cast<int>(g);
      const MemoryTensor which[] = {MemoryTensor::kFp32, MemoryTensor::kExpAvg,
                                    MemoryTensor::kExpAvgSq};
      for (int s = 0; s < deepspeed::kNumStates; ++s) {
        const DType dtype = s == 0 ? ck.master_dtype : ck.state_dtype;
        UCP_ASSIGN_OR_RETURN(ucp::ByteRun run, b.AddTensor(pi, which[s], dtype));
        p.states[s].dtype = dtype;
        if (run.size > 0) p.states[s].runs.push_back(run);
      }
      group.params.push_back(static_cast<int>(b.in->params.size()));
      b.in->params.push_back(std::move(p));
    }
    b.in->groups.push_back(std::move(group));
  }
  return absl::OkStatus();
}

// A 0-element tensor over its own empty storage: ZeRO-3's module entry of a partitioned parameter.
const Value* Placeholder(Builder& b, DType dtype) {
  const StorageRef* storage =
      b.arena->NewStorage(StorageRef{"0", dtype, "cpu", 0, false, std::nullopt});
  b.in->storage_runs[storage] = ucp::ByteRun{0, 0, 0};
  TensorRef t;
  t.storage = storage;
  t.dtype = dtype;
  t.shape = Shape({0});
  t.stride = t.shape.ContiguousStrides();
  return b.arena->Tensor(std::move(t));
}

// ZeRO-3's trees (deepspeed-formats.md §4): the model states with a placeholder module,
// param_shapes per group, frozen_param_shapes, shared_params and a frozen_param_fragments the
// writer fills per rank; the optimizer_state_dict template of DeepSpeedZeroOptimizer_Stage3 with
// one sub-group per param group (sub_group_size above the model), whose tensors the writer cuts.
absl::Status BuildZero3Trees(Builder& b, Value* root) {
  const MemoryCheckpoint& ck = b.ck;
  ValueArena& a = *b.arena;
  Value* module = a.OrderedDict();
  if (const Value* skeleton = ck.model_states->Get(keys::kModule);
      skeleton != nullptr && skeleton->state() != nullptr) {
    ValueArena::SetState(module, skeleton->state());
  }
  Value* frozen_shapes = a.OrderedDict();
  Value* shared = a.Dict();
  for (size_t i = 0; i < ck.params.size(); ++i) {
    const MemoryParam& p = ck.params[i];
    a.SetItem(module, p.name, Placeholder(b, p.weight_dtype));
    if (p.role == MemoryParamRole::kTied && p.shared_param)
      a.SetItem(shared, p.name, a.Str(p.tied_to));
    if (p.role != MemoryParamRole::kFrozen) continue;
    a.SetItem(frozen_shapes, p.name, plan::TorchSize(a, p.shape));
    SinkFrozen f;
    f.name = p.name;
    f.shape = p.shape;
    f.bytes.dtype = p.weight_dtype;
    UCP_ASSIGN_OR_RETURN(ucp::ByteRun run,
                         b.AddTensor(static_cast<int>(i), MemoryTensor::kWeight, p.weight_dtype));
    if (run.size > 0) f.bytes.runs.push_back(run);
    b.in->frozen.push_back(std::move(f));
  }
  Value* shapes = a.List();
  bool autoep = false;  // AutoEP engines record plain tuples
  for (const SinkGroup& g : b.in->groups) autoep = autoep || g.expert;
  for (const MemoryGroup& g : ck.groups) {
    Value* od = a.OrderedDict();
    for (int pi : g.params)
      a.SetItem(od, ck.params[pi].name, plan::ParamShapeValue(a, ck.params[pi].shape, autoep));
    ValueArena::Append(shapes, od);
  }
  plan::SetOrReplace(a, root, keys::kModule, module);
  plan::SetOrReplace(a, root, keys::kParamShapes, shapes);
  plan::SetOrReplace(a, root, keys::kFrozenParamShapes, frozen_shapes);
  plan::SetOrReplace(a, root, keys::kSharedParams, shared);
  plan::SetOrReplace(a, root, keys::kFrozenParamFragments, a.OrderedDict());

  Value* state = a.Dict();
  Value* groups = a.List();
  Value* flat = a.List();
  for (size_t g = 0; g < ck.groups.size(); ++g) {
    Value* sg = a.Dict();
    if (ck.groups[g].step != nullptr) a.SetItem(sg, keys::kStep, ck.groups[g].step);
    a.SetItem(sg, keys::kExpAvg, Placeholder(b, ck.state_dtype));
    a.SetItem(sg, keys::kExpAvgSq, Placeholder(b, ck.state_dtype));
    ValueArena::SetItem(state, a.Int(static_cast<int64_t>(g)), sg);
    UCP_ASSIGN_OR_RETURN(const Value* pg, Zero0ParamGroup(a, ck.groups[g].hyperparameters,
                                                          static_cast<int>(g), ck.name));
    ValueArena::Append(groups, pg);
    ValueArena::Append(flat, Placeholder(b, ck.master_dtype));
  }
  Value* inner = a.Dict();
  a.SetItem(inner, keys::kState, state);
  a.SetItem(inner, keys::kParamGroups, groups);
  Value* osd = a.Dict();
  a.SetItem(osd, keys::kZeroStage, ZeroStageEnumValue(a, 3));
  const Value* scalars = ck.optimizer_scalars;
  for (absl::string_view k : {keys::kLossScaler, keys::kDynamicLossScale, keys::kOverflow}) {
    const Value* v = scalars != nullptr ? scalars->Get(k) : nullptr;
    a.SetItem(osd, k,
              v != nullptr             ? v
              : k == keys::kLossScaler ? StaticLossScaler(a)
                                       : a.Bool(false));
  }
  a.SetItem(osd, keys::kPartitionCount, a.Int(1));
  if (autoep) {
    // The placement of every sub-group (§4.4); the writer sets counts, ranks and EP names.
    Value* placement = a.List();
    for (size_t g = 0; g < b.in->groups.size(); ++g) {
      const bool expert = b.in->groups[g].expert;
      Value* e = a.Dict();
      a.SetItem(e, "sub_group", a.Int(static_cast<int64_t>(g)));
      a.SetItem(e, keys::kPartitionCount, a.Int(1));
      a.SetItem(e, keys::kPartitionRank, a.Int(0));
      a.SetItem(e, keys::kPartitionRanks, a.List({a.Int(0)}));
      a.SetItem(e, "families", a.List({a.Str(expert ? "autoep_expert" : "replicated")}));
      a.SetItem(e, keys::kGroupNames, a.List({a.Str(expert ? "ep_size_1" : "replicated")}));
      ValueArena::Append(placement, e);
    }
    a.SetItem(osd, keys::kDsZeroPartitionGroups, placement);
  }
  a.SetItem(osd, keys::kOptimizerStateDict, inner);
  a.SetItem(osd, keys::kFp32FlatGroups, flat);
  b.in->optimizer_template = osd;
  return absl::OkStatus();
}

// AutoEP expert weights (named by the skeleton's ds_autoep_layers) and their groups.
absl::Status MarkExperts(const Value* root, ZeroSinkInput* in) {
  int ep = 1;
  const std::string what = absl::StrCat(in->origin, ": ", keys::kDsAutoepLayers);
  UCP_ASSIGN_OR_RETURN(auto experts, internal_sink::AutoEpExperts(*root, what, &ep));
  if (experts.empty()) return absl::OkStatus();
  if (ep != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": a memory checkpoint holds whole expert tensors (ep_size 1), not ", ep));
  }
  for (SinkGroup& g : in->groups) {
    int n = 0;
    for (int pi : g.params) {
      SinkParam& p = in->params[pi];
      auto e = experts.find(p.name);
      if (e == experts.end()) continue;
      if (p.shape.rank() < 1 || p.shape.dim(0) != e->second) {
        return absl::InvalidArgumentError(absl::StrCat(in->origin, ": expert weight '", p.name,
                                                       "' has shape ", p.shape.ToString(), ", not ",
                                                       e->second, " experts"));
      }
      p.expert = true;
      p.num_experts = e->second;
      ++n;
    }
    if (n != 0 && n != static_cast<int>(g.params.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat(in->origin, ": a param group mixes expert and other parameters"));
    }
    g.expert = n > 0;
  }
  in->topology.ep = 1;
  return absl::OkStatus();
}

// AutoEP's module state_dict leaves the expert weights out (they go to expert files at ZeRO-1/2
// and live in the partitions at ZeRO-3).
absl::Status DropExpertsFromModule(ValueArena& a, Value* root, const ZeroSinkInput& in) {
  absl::flat_hash_set<std::string> experts;
  for (const SinkParam& p : in.params) {
    if (p.expert) experts.insert(p.name);
  }
  if (experts.empty()) return absl::OkStatus();
  const Value* module = root->Get(keys::kModule);
  if (module == nullptr || !module->is_dict()) return absl::OkStatus();
  Value* out = a.OrderedDict();
  if (module->state() != nullptr) ValueArena::SetState(out, module->state());
  for (const auto& [k, v] : module->entries()) {
    if (k->kind() == ValueKind::kStr && experts.contains(k->str())) continue;
    ValueArena::SetItem(out, k, v);
  }
  plan::SetOrReplace(a, root, keys::kModule, out);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ZeroSinkInput> ZeroSinkInputFromMemory(MemoryCheckpoint ck) {
  UCP_RETURN_IF_ERROR(CheckParams(ck));
  ZeroSinkInput in;
  in.kind = SinkInputKind::kMemory;
  in.origin = ck.name;
  in.zero_stage = 0;  // whole tensors: written as the sink writes a ZeRO-0 source
  in.module_per_tensor = true;
  in.bf16_optimizer = ck.bf16_optimizer;
  auto arena = std::make_shared<ValueArena>();
  auto source = std::make_shared<MemoryCheckpointSource>(ck.name, ck.read);
  Builder b{ck, &in, arena.get(), source.get()};
  // The skeleton, with what the sink writes itself cleared: module (rebuilt here), the ZeRO-0
  // forms of optimizer / frozen_param_* (the sink writes them at the target stage).
  Value* root = plan::CopyDict(*arena, *ck.model_states);
  UCP_ASSIGN_OR_RETURN(Value * module, BuildModule(b, ck.model_states->Get(keys::kModule)));
  plan::SetOrReplace(*arena, root, keys::kModule, module);
  Value* buffers = arena->List();
  for (const MemoryParam& p : ck.params) {
    if (p.role == MemoryParamRole::kBuffer) ValueArena::Append(buffers, arena->Str(p.name));
  }
  plan::SetOrReplace(*arena, root, keys::kBufferNames, buffers);
  for (absl::string_view key : {keys::kOptimizer, keys::kFrozenParamShapes,
                                keys::kFrozenParamFragments, keys::kParamShapes}) {
    if (root->Get(key) != nullptr) plan::SetOrReplace(*arena, root, key, arena->None());
  }
  UCP_RETURN_IF_ERROR(BuildParams(b));
  UCP_RETURN_IF_ERROR(MarkExperts(root, &in));
  for (const auto& [storage, bytes] : ck.storages) {
    Segment s;
    s.size = bytes.size();
    s.buffer = bytes;
    const uint64_t at = source->Add(std::move(s));
    in.storage_runs[storage] = ucp::ByteRun{0, at, bytes.size()};
  }
  UCP_RETURN_IF_ERROR(CheckTensorsHaveBytes(in, root, "model_states"));
  UCP_RETURN_IF_ERROR(CheckTensorsHaveBytes(in, ck.optimizer_scalars, "optimizer_scalars"));
  for (const SinkGroup& g : in.groups) {
    UCP_RETURN_IF_ERROR(CheckTensorsHaveBytes(in, g.step, "a group's step"));
    UCP_RETURN_IF_ERROR(CheckTensorsHaveBytes(in, g.hyperparameters, "a group's hyper-parameters"));
  }
  in.model_root = root;
  in.optimizer_template = ck.optimizer_scalars;
  if (ck.zero3) {
    in.zero_stage = 3;
    in.module_per_tensor = false;
    in.shared_params.clear();
    UCP_RETURN_IF_ERROR(BuildZero3Trees(b, root));
  }
  UCP_RETURN_IF_ERROR(DropExpertsFromModule(*arena, root, in));
  in.sources.push_back(std::move(source));
  in.owners.push_back(std::move(arena));
  if (ck.owner != nullptr) in.owners.push_back(ck.owner);
  return in;
}

}  // namespace ucp::converters::sinks
