#include "runtime/checkpoint/load.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include <cstring>
#include <filesystem>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "converters/sources/open_source.h"
#include "formats/base/status.h"
#include "formats/deepspeed/file_names.h"
#include "formats/deepspeed/value_access.h"
#include "formats/torch/torch_file.h"
#include "formats/torch/value_json.h"

namespace ucp::runtime {
namespace {

namespace fs = std::filesystem;
namespace ft = ::ucp::formats::torch;
namespace ds = ::ucp::formats::deepspeed;

at::ScalarType ScalarOf(DType t) {
  switch (t) {
    case DType::kBF16: return at::kBFloat16;
    case DType::kF16: return at::kHalf;
    case DType::kF64: return at::kDouble;
    default: return at::kFloat;
  }
}

// The whole tensor of a state as fp32.
absl::StatusOr<at::Tensor> ReadWhole(const ucp::Source& src, const ucp::ParamMeta& p,
                                     ucp::ParamState s) {
  const ucp::StateMeta& meta = *p.state(s);
  if (meta.dtype != DType::kF32 && meta.dtype != DType::kBF16 && meta.dtype != DType::kF16 &&
      meta.dtype != DType::kF64)
    return absl::InvalidArgumentError(
        absl::StrCat(p.name, ": ", ucp::ParamStateName(s), " is not a floating-point tensor"));
  at::Tensor t = at::empty(at::IntArrayRef(p.shape.dims().data(), p.shape.dims().size()),
                           at::TensorOptions().dtype(ScalarOf(meta.dtype)));
  UCP_RETURN_IF_ERROR(
      src.ReadState(p, s,
                    absl::Span<std::byte>(static_cast<std::byte*>(t.data_ptr()),
                                          static_cast<size_t>(t.numel()) * t.element_size())));
  return t.to(at::kFloat);
}

// Elements [offset, offset + numel) of a state as fp32, reading only those bytes.
absl::StatusOr<at::Tensor> ReadRange(const ucp::Source& src, const ucp::ParamMeta& p,
                                     ucp::ParamState s, int64_t offset, int64_t numel) {
  const ucp::StateMeta& meta = *p.state(s);
  at::Tensor t = at::empty({numel}, at::TensorOptions().dtype(ScalarOf(meta.dtype)));
  const uint64_t elem = static_cast<uint64_t>(t.element_size());
  UCP_RETURN_IF_ERROR(
      src.ReadStateRange(p, s, static_cast<uint64_t>(offset) * elem,
                         absl::Span<std::byte>(static_cast<std::byte*>(t.data_ptr()),
                                               static_cast<size_t>(numel) * elem)));
  return t.to(at::kFloat);
}

// global_steps, global_samples, skipped_steps, the scheduler and the client state of the
// model-states file in `dir` (ZeRO tag folder or UCP folder), when there is one.
absl::Status ReadModelStates(const std::string& dir, const std::vector<std::string>& wanted,
                             OpenedCheckpoint* out) {
  std::string path;
  for (const std::string& name : {ds::ModelStatesFileName(0), ds::ZeroModelStatesFileName(0, 0)}) {
    if (fs::exists(fs::path(dir) / name)) {
      path = (fs::path(dir) / name).string();
      break;
    }
  }
  if (path.empty()) return absl::OkStatus();  // weights: nothing to restore
  UCP_ASSIGN_OR_RETURN(ft::TorchFile file, ft::TorchFile::OpenPath(path));
  const ft::Value& root = file.root();
  if (const ft::Value* module = root.Get("module"); module != nullptr) {
    for (const std::string& name : wanted) {
      const ft::Value* v = module->Get(name);
      if (v == nullptr || v->kind() != ft::ValueKind::kTensor) continue;
      const ft::TensorRef& ref = v->tensor();
      UCP_ASSIGN_OR_RETURN(Buffer bytes, file.TensorBytes(ref));
      at::Tensor t = at::empty(at::IntArrayRef(ref.shape.dims().data(), ref.shape.dims().size()),
                               at::TensorOptions().dtype(ScalarOf(ref.dtype)));
      if (bytes.size() != static_cast<size_t>(t.numel()) * t.element_size())
        return absl::DataLossError(absl::StrCat(path, ": module.", name, " has the wrong size"));
      std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
      out->module_tensors.emplace_back(name, t.to(at::kFloat));
    }
  }
  auto int_key = [&](const char* key, int64_t* v) -> absl::Status {
    if (const ft::Value* x = root.Get(key); ds::IsSet(x)) {
      UCP_ASSIGN_OR_RETURN(*v, ds::AsInt(x, absl::StrCat(path, ": ", key)));
    }
    return absl::OkStatus();
  };
  UCP_RETURN_IF_ERROR(int_key("global_steps", &out->global_steps));
  UCP_RETURN_IF_ERROR(int_key("global_samples", &out->global_samples));
  UCP_RETURN_IF_ERROR(int_key("skipped_steps", &out->skipped_steps));
  out->lr_last_batch_iteration = out->global_steps - 1;
  if (const ft::Value* s = root.Get("lr_scheduler"); ds::IsSet(s)) {
    if (const ft::Value* it = s->Get("last_batch_iteration"); ds::IsSet(it)) {
      UCP_ASSIGN_OR_RETURN(
          out->lr_last_batch_iteration,
          ds::AsInt(it, absl::StrCat(path, ": lr_scheduler.last_batch_iteration")));
    }
  }
  // Client state: the keys save_checkpoint adds beyond its own (deepspeed-formats.md §1).
  static const char* kOwn[] = {"module",
                               "buffer_names",
                               "optimizer",
                               "param_shapes",
                               "frozen_param_shapes",
                               "shared_params",
                               "frozen_param_fragments",
                               "lr_scheduler",
                               "data_sampler",
                               "random_ltd",
                               "sparse_tensor_module_names",
                               "skipped_steps",
                               "global_steps",
                               "global_samples",
                               "dp_world_size",
                               "mp_world_size",
                               "checkpoint_parallel_dimensions",
                               "ds_config",
                               "ds_version",
                               "num_experts",
                               "ds_autoep_layers"};
  for (const auto& [k, v] : root.entries()) {
    if (k->kind() != ft::ValueKind::kStr) continue;
    bool own = false;
    for (const char* o : kOwn) own = own || k->str() == o;
    // Plain values only (numbers, strings, dicts and lists of them): a tensor or a Python object
    // in client state is not carried over.
    const nlohmann::json j = ucp::PlainJson(*v);
    if (!own && j.dump().find("tensor") == std::string::npos && v->kind() != ft::ValueKind::kObject)
      out->client_state[k->str()] = j;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<OpenedCheckpoint> OpenForModel(const LoadRequest& rq, const Model& model) {
  converters::sources::OpenSourceOptions opts;
  opts.tag = rq.tag;
  opts.prefer_universal = rq.prefer_universal;
  OpenedCheckpoint out;
  UCP_ASSIGN_OR_RETURN(out.source, converters::sources::OpenSource(rq.path, opts));
  const ucp::Source& src = *out.source;
  const ucp::SourceInfo& info = src.info();
  out.description = absl::StrCat(ucp::SourceKindName(src.kind()));
  if (info.zero_stage >= 0)
    absl::StrAppend(&out.description, " (ZeRO-", info.zero_stage, ", dp ", info.dp_size, ")");
  absl::StrAppend(&out.description, " ", info.path);
  // Sources serve whole (TP-merged) tensors, so a tensor-parallel checkpoint loads at tp 1.
  // AutoEP checkpoints at any autoep_size: the Source serves whole [num_experts, ...] tensors.
  if (info.pp_size != 1)
    return absl::UnimplementedError(absl::StrCat(info.path, ": pp ", info.pp_size,
                                                 ": ucp train loads no pipeline-parallel "
                                                 "checkpoints"));
  // Non-trainable module entries the Source does not list come from the model-states file.
  std::vector<std::string> unlisted;
  for (const ModelParam& mp : model.params()) {
    if (src.Find(mp.name) == nullptr && mp.kind != ParamKind::kTrainable)
      unlisted.push_back(mp.name);
  }
  UCP_RETURN_IF_ERROR(ReadModelStates(info.path, unlisted, &out));
  auto from_module = [&](const std::string& name) -> const at::Tensor* {
    for (const auto& [n, t] : out.module_tensors) {
      if (n == name) return &t;
    }
    return nullptr;
  };
  // Every model parameter must be there with its shape; every checkpoint parameter must be known.
  absl::flat_hash_set<std::string> consumed;  // Hugging Face MoE tensors read under other names
  for (size_t mi = 0; mi < model.params().size(); ++mi) {
    const ModelParam& mp = model.params()[mi];
    const ucp::ParamMeta* p = src.Find(mp.name);
    if (p == nullptr && rq.module_only) {
      if (std::optional<HfMoeRead> r = FindHfMoeSource(src, mp)) {
        for (const ucp::ParamMeta* part : r->parts) consumed.insert(part->name);
        out.hf_moe.emplace_back(static_cast<int>(mi), *r);
        continue;
      }
    }
    if (p == nullptr && from_module(mp.name) != nullptr) {
      if (from_module(mp.name)->sizes().vec() != mp.shape)
        return absl::InvalidArgumentError(
            absl::StrCat(info.path, ": ", mp.name, " has another shape than the model's"));
      continue;
    }
    if (p == nullptr)
      return absl::InvalidArgumentError(absl::StrCat(info.path, " has no parameter ", mp.name,
                                                     ": a checkpoint of another model?"));
    if (std::vector<int64_t>(p->shape.dims().begin(), p->shape.dims().end()) != mp.global_shape())
      return absl::InvalidArgumentError(absl::StrCat(
          info.path, ": ", mp.name, " has shape ", p->shape.ToString(), ", the model's is ",
          Shape(mp.global_shape()).ToString(), ": a checkpoint of another model?"));
    if (!p->has_state(ucp::ParamState::kFp32))
      return absl::InvalidArgumentError(absl::StrCat(info.path, ": ", mp.name, " has no weights"));
  }
  for (const ucp::ParamMeta& p : src.params()) {
    if (model.Find(p.name) >= 0 || !p.tied_to.empty() || consumed.contains(p.name)) continue;
    bool alias = false;
    for (const TiedAlias& t : model.tied()) alias = alias || t.alias == p.name;
    if (!alias)
      return absl::InvalidArgumentError(
          absl::StrCat(info.path, " has parameter ", p.name,
                       " that the model does not: a checkpoint of another model?"));
  }
  if (rq.module_only) return out;
  if (src.kind() != ucp::SourceKind::kZero && src.kind() != ucp::SourceKind::kUniversal)
    return absl::InvalidArgumentError(
        absl::StrCat(info.path, " holds weights only: load it with --load-module-only"));
  // The param groups: membership and flat order as the checkpoint lists them.
  const size_t ngroups = info.param_groups.size();
  out.groups.resize(ngroups);
  out.group_lr.resize(ngroups, 0.0);
  for (size_t g = 0; g < ngroups; ++g) {
    const nlohmann::json& hp = info.param_groups[g];
    out.groups[g].name = hp.value("name", absl::StrCat("group", g));
    out.groups[g].weight_decay = hp.value("weight_decay", 0.0);
    out.group_lr[g] = hp.value("lr", 0.0);
  }
  for (const ucp::ParamMeta& p : src.params()) {
    if (p.role != ucp::ParamRole::kTrainable || !p.tied_to.empty()) continue;
    const int mi = model.Find(p.name);
    if (mi < 0) continue;
    if (model.params()[mi].kind != ParamKind::kTrainable)
      return absl::InvalidArgumentError(
          absl::StrCat(info.path, ": ", p.name, " is trainable there, frozen in the model"));
    if (p.param_group < 0 || static_cast<size_t>(p.param_group) >= ngroups)
      return absl::DataLossError(
          absl::StrCat(info.path, ": ", p.name, " has no valid param group"));
    for (int s = 1; s < 3; ++s) {
      if (!p.has_state(static_cast<ucp::ParamState>(s)))
        return absl::InvalidArgumentError(
            absl::StrCat(info.path, ": ", p.name, " has no optimizer state (",
                         ucp::ParamStateName(static_cast<ucp::ParamState>(s)),
                         "): load it with --load-module-only"));
    }
    out.groups[p.param_group].params.push_back(mi);
    out.groups[p.param_group].expert = model.params()[mi].expert();
    if (p.step) out.groups[p.param_group].step = *p.step;
  }
  for (const ModelParam& mp : model.params()) {
    const ucp::ParamMeta* p = src.Find(mp.name);
    if (p == nullptr) continue;
    if (mp.kind == ParamKind::kTrainable && p->role != ucp::ParamRole::kTrainable)
      return absl::InvalidArgumentError(
          absl::StrCat(info.path, ": ", mp.name, " is not trainable there"));
  }
  if (info.step && out.global_steps == 0) out.global_steps = *info.step;
  return out;
}

absl::Status LoadInto(const OpenedCheckpoint& ck, Engine& engine, bool module_only) {
  const ucp::Source& src = *ck.source;
  const Model& model = engine.model();
  for (size_t i = 0; i < model.params().size(); ++i) {
    const ModelParam& mp = model.params()[i];
    const ucp::ParamMeta* found = src.Find(mp.name);
    if (found == nullptr) {
      for (const auto& [n, t] : ck.module_tensors) {
        if (n == mp.name) engine.SetParam(static_cast<int>(i), t);
      }
      for (const auto& [mi, r] : ck.hf_moe) {
        if (mi != static_cast<int>(i)) continue;
        UCP_ASSIGN_OR_RETURN(at::Tensor w, ReadHfMoe(r, [&](const ucp::ParamMeta& part) {
                               return ReadWhole(src, part, ucp::ParamState::kFp32);
                             }));
        engine.SetParam(static_cast<int>(i), mp.Slice(w).contiguous());
      }
      continue;
    }
    const ucp::ParamMeta& p = *found;
    // A sliced parameter (AutoEP experts, AutoTP): this rank's part of the whole tensor. ZeRO-3
    // reads ranges, which are contiguous in the whole tensor for dim-0 slices only.
    // (Rows counted from the trailing dims: an AutoTP rank without KV heads has 0 rows.)
    int64_t row = 1;
    for (size_t d = 1; d < mp.shape.size(); ++d) row *= mp.shape[d];
    const int64_t base = mp.slice_dim == 0 ? mp.slice_begin * row : 0;
    auto local = [&](const at::Tensor& whole) { return mp.Slice(whole).contiguous(); };
    // ZeRO-3 keeps no whole module tensor: only this rank's pieces are read.
    const bool trainable = !module_only && mp.kind == ParamKind::kTrainable;
    at::Tensor w;
    if (!trainable || engine.config().stage < 3) {
      UCP_ASSIGN_OR_RETURN(w, ReadWhole(src, p, ucp::ParamState::kFp32));
      w = local(w);
    }
    if (!trainable) {
      engine.SetParam(static_cast<int>(i), w);
      continue;
    }
    // The module tensor from the whole master; the master and moments only where this rank
    // holds them (1/dp of them at stages 1-3).
    if (w.defined()) engine.SetModule(static_cast<int>(i), w);
    const auto owned = engine.OwnedRanges(static_cast<int>(i));
    // A row-parallel slice or a sub-parameter split (pieces) is not one range of the whole
    // tensor: its moments are read whole, once. (ZeRO-3, which reads the master by ranges, runs
    // without AutoTP.)
    const std::pair<ucp::ParamState, StateTensor> kMoments[] = {
        {ucp::ParamState::kExpAvg, StateTensor::kExpAvg},
        {ucp::ParamState::kExpAvgSq, StateTensor::kExpAvgSq}};
    at::Tensor sliced_moments[2];
    if ((mp.slice_dim > 0 || !mp.one_piece()) && !owned.empty()) {
      for (int m = 0; m < 2; ++m) {
        UCP_ASSIGN_OR_RETURN(at::Tensor whole, ReadWhole(src, p, kMoments[m].first));
        sliced_moments[m] = local(whole).reshape({-1});
      }
    }
    for (const auto& [offset, numel] : owned) {
      at::Tensor master;
      if (w.defined()) {
        master = w.reshape({-1}).narrow(0, offset, numel);
      } else {
        UCP_ASSIGN_OR_RETURN(master,
                             ReadRange(src, p, ucp::ParamState::kFp32, base + offset, numel));
      }
      engine.SetOwned(static_cast<int>(i), StateTensor::kFp32, offset, master);
      for (int m = 0; m < 2; ++m) {
        at::Tensor part;
        if (sliced_moments[m].defined()) {
          part = sliced_moments[m].narrow(0, offset, numel);
        } else {
          UCP_ASSIGN_OR_RETURN(part, ReadRange(src, p, kMoments[m].first, base + offset, numel));
        }
        engine.SetOwned(static_cast<int>(i), kMoments[m].second, offset, part);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace ucp::runtime
