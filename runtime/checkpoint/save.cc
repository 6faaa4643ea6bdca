#include "runtime/checkpoint/save.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "converters/pipelines/reshard.h"
#include "converters/sinks/zero/memory_input.h"
#include "formats/base/status.h"
#include "formats/torch/pickle_value.h"

namespace ucp::runtime {
namespace {

namespace ft = ::ucp::formats::torch;
namespace sinks = ::ucp::converters::sinks;
namespace fs = std::filesystem;
using ft::Value;
using ft::ValueArena;

constexpr char kDsVersion[] = "0.19.6+edaa72212";  // the DeepSpeed whose layout ucp writes

DType DTypeOf(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16: return DType::kBF16;
    case at::kHalf: return DType::kF16;
    default: return DType::kF32;
  }
}

// Builds the Values of the checkpoint's non-tensor trees in one arena.
class Trees {
 public:
  Value* Dict(std::initializer_list<std::pair<absl::string_view, const Value*>> entries) {
    Value* d = a_->Dict();
    for (const auto& [key, value] : entries) a_->SetItem(d, key, value);
    return d;
  }
  template <typename J>
  const Value* Json(const J& j) {
    switch (j.type()) {
      case J::value_t::object: {
        Value* d = a_->Dict();
        for (const auto& [k, v] : j.items()) a_->SetItem(d, k, Json(v));
        return d;
      }
      case J::value_t::array: {
        std::vector<const Value*> items;
        for (const auto& v : j) items.push_back(Json(v));
        return a_->List(std::move(items));
      }
      case J::value_t::string: return a_->Str(j.template get<std::string>());
      case J::value_t::boolean: return a_->Bool(j.template get<bool>());
      case J::value_t::number_integer:
      case J::value_t::number_unsigned: return a_->Int(j.template get<int64_t>());
      case J::value_t::number_float: return a_->Float(j.template get<double>());
      default: return a_->None();
    }
  }
  // A 0-dim fp32 tensor (the optimizer's step), its bytes handed to the checkpoint.
  const Value* Scalar(float x, sinks::MemoryCheckpoint* ck) {
    const ft::StorageRef* storage =
        a_->NewStorage({"0", DType::kF32, "cpu", 1, false, std::nullopt});
    std::vector<std::byte> bytes(4);
    std::memcpy(bytes.data(), &x, 4);
    ck->storages[storage] = Buffer::FromVector(std::move(bytes));
    ft::TensorRef t;
    t.storage = storage;
    t.dtype = DType::kF32;
    return a_->Tensor(std::move(t));
  }
  ValueArena& a() { return *a_; }
  std::shared_ptr<ValueArena> arena() { return a_; }

 private:
  std::shared_ptr<ValueArena> a_ = std::make_shared<ValueArena>();
};

// Writes `text` to path.tmp, fsyncs it (when asked), renames it over `path`, fsyncs the folder.
absl::Status WriteFileAtomic(const std::string& path, const std::string& text, bool sync) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  (!sync || ::fsync(fd) == 0);
  ::close(fd);
  if (!ok)
    return absl::InternalError(absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot rename ", tmp, " to ", path, ": ", ec.message()));
  if (sync) {
    const int dir =
        ::open(fs::path(path).parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      ::fsync(dir);
      ::close(dir);
    }
  }
  return absl::OkStatus();
}

// AutoTP's universal_checkpoint_info (deepspeed-runtime.md §2.8) as DeepSpeed's AutoTP engine
// records it (collect_autotp_universal_checkpoint_info): row-parallel weights, replicated
// parameters (and row-parallel biases), vocabulary parameters, as sorted ^escaped$ patterns; the
// sub-parameter splits in parameter order, their shape's partition dim carrying the
// sub-parameter sizes (a tuple) and sub_param_shard_widths every rank's widths.
const Value* TpUniversalInfo(const Model& model, Trees& t) {
  ValueArena& a = t.a();
  auto pattern = [](const std::string& name) {
    std::string out = "^";
    for (char c : name) {
      if (c == '.') out += '\\';
      out += c;
    }
    return out + "$";
  };
  std::vector<std::string> row, replicated, vocab;
  std::vector<const Value*> sub_params;
  Value* widths = a.Dict();
  int64_t vocab_size = 0;
  for (const ModelParam& p : model.params()) {
    if (p.kind != ParamKind::kTrainable) continue;
    const TpParamSplit* split = p.tp_split.get();
    if (!p.tp_sharded) {
      replicated.push_back(pattern(p.name));
      continue;
    }
    if (split != nullptr ? split->row : p.slice_dim == 1) row.push_back(pattern(p.name));
    if (p.slice_dim == 0 && p.shape.size() == 2 &&
        (p.name.find("embed") != std::string::npos ||
         p.name.find("lm_head") != std::string::npos)) {
      vocab.push_back(pattern(p.name));
      vocab_size = p.slice_full;
    }
    if (split == nullptr || !split->sub_params) continue;
    std::vector<const Value*> shape;
    for (size_t d = 0; d < split->published_shape.size(); ++d) {
      const nlohmann::json& e = split->published_shape[d];
      if (!e.is_array()) {
        shape.push_back(a.Int(e.get<int64_t>()));
        continue;
      }
      std::vector<const Value*> sizes;
      for (const nlohmann::json& size : e) sizes.push_back(a.Int(size.get<int64_t>()));
      shape.push_back(a.Tuple(std::move(sizes)));
    }
    sub_params.push_back(t.Dict({{"patterns", a.List({a.Str(pattern(p.name))})},
                                 {"shape", a.List(std::move(shape))},
                                 {"partition_dim", a.Int(split->partition_dim)}}));
    std::vector<const Value*> per_sub;
    for (const std::vector<int64_t>& w : split->widths) {
      std::vector<const Value*> ranks;
      for (int64_t x : w) ranks.push_back(a.Int(x));
      per_sub.push_back(a.List(std::move(ranks)));
    }
    a.SetItem(widths, pattern(p.name), a.List(std::move(per_sub)));
  }
  for (auto* v : {&row, &replicated, &vocab}) std::sort(v->begin(), v->end());
  Value* info = t.Dict({{"universal_checkpoint_version", a.Float(0.4)},
                        {"parameter_with_row_parallelism_patterns", t.Json(nlohmann::json(row))},
                        {"tp_replicated_parameter_patterns", t.Json(nlohmann::json(replicated))},
                        {"vocabulary_parameter_patterns", t.Json(nlohmann::json(vocab))},
                        {"parameter_with_sub_params", a.List(std::move(sub_params))},
                        {"autotp_unsupported_parameter_patterns", a.Dict()}});
  if (!widths->entries().empty()) a.SetItem(info, "sub_param_shard_widths", widths);
  if (!vocab.empty()) a.SetItem(info, "original_vocab_size", a.Int(vocab_size));
  return info;
}

// The memory input of one TP rank's tensors (module and states indexed by model parameter, on
// the root): the model states and optimizer trees DeepSpeed writes for it.
absl::StatusOr<sinks::ZeroSinkInput> BuildInput(Engine& e, const SaveRequest& rq,
                                                const std::vector<std::vector<at::Tensor>>& states,
                                                const std::vector<at::Tensor>& module,
                                                int mp_rank) {
  Model& model = e.model();
  const int tp = e.tp().size;
  Trees t;
  ValueArena& a = t.a();
  sinks::MemoryCheckpoint ck;
  ck.name = "<ucp train memory>";
  // Tensors the callback serves, by MemoryCheckpoint param index: weight, fp32, exp_avg,
  // exp_avg_sq.
  auto tensors_owner = std::make_shared<std::vector<std::array<at::Tensor, 4>>>();
  std::vector<std::array<at::Tensor, 4>>& tensors = *tensors_owner;
  std::vector<int> ck_index(model.params().size(), -1);
  for (const std::string& name : model.state_dict_order()) {
    sinks::MemoryParam p;
    p.name = name;
    p.weight_dtype = DTypeOf(e.config().dtype);
    std::array<at::Tensor, 4> ts;
    const int mi = model.Find(name);
    if (mi < 0) {
      const TiedAlias* alias = nullptr;
      for (const TiedAlias& ta : model.tied()) {
        if (ta.alias == name) alias = &ta;
      }
      if (alias == nullptr)
        return absl::InternalError(absl::StrCat("unknown state_dict entry ", name));
      p.role = sinks::MemoryParamRole::kTied;
      p.tied_to = alias->target;
      p.shared_param = alias->shared_param;
      p.shape = Shape(module[model.Find(alias->target)].sizes().vec());
    } else {
      const ModelParam& mp = model.params()[mi];
      // Experts: gathered from every EP rank; AutoTP: this TP rank's slice.
      p.shape = Shape(module[mi].sizes().vec());
      ts[0] = module[mi].contiguous();
      if (mp.kind == ParamKind::kTrainable) {
        for (int s = 0; s < 3; ++s) ts[1 + s] = states[s][mi].contiguous();
      } else {
        p.role = mp.kind == ParamKind::kFrozen ? sinks::MemoryParamRole::kFrozen
                                               : sinks::MemoryParamRole::kBuffer;
      }
      ck_index[mi] = static_cast<int>(ck.params.size());
    }
    ck.params.push_back(std::move(p));
    tensors.push_back(std::move(ts));
  }
  const AdamStep& adam = e.config().adam;
  const bool autoep = !rq.autoep_layers.empty();
  for (size_t g = 0; g < e.groups().size(); ++g) {
    const OptimGroup& og = e.groups()[g];
    sinks::MemoryGroup mg;
    // torch.optim AdamW's param_groups entry, in its key order (user keys, then defaults): the
    // fixtures' client groups {weight_decay, name}; an AutoEP engine's groups from the JSON
    // optimizer {name[, moe]} with the hyper-parameters after them.
    const double lr = g < rq.group_lr.size() ? rq.group_lr[g] : 0.0;
    Value* hp = a.Dict();
    if (!autoep) a.SetItem(hp, "weight_decay", a.Float(og.weight_decay));
    a.SetItem(hp, "name", a.Str(og.name));
    if (og.expert) a.SetItem(hp, "moe", a.Bool(true));
    a.SetItem(hp, "lr", a.Float(lr));
    a.SetItem(hp, "betas", a.List({a.Float(adam.beta1), a.Float(adam.beta2)}));
    a.SetItem(hp, "eps", a.Float(adam.eps));
    if (autoep) a.SetItem(hp, "weight_decay", a.Float(og.weight_decay));
    a.SetItem(hp, "amsgrad", a.Bool(false));
    a.SetItem(hp, "foreach", a.None());
    a.SetItem(hp, "maximize", a.Bool(false));
    a.SetItem(hp, "capturable", a.Bool(false));
    a.SetItem(hp, "params", a.List({a.Int(static_cast<int64_t>(g))}));
    mg.hyperparameters = hp;
    mg.step = og.step > 0 ? t.Scalar(static_cast<float>(og.step), &ck) : nullptr;
    for (int p : og.params) {
      ck.params[ck_index[p]].group = static_cast<int>(g);
      mg.params.push_back(ck_index[p]);
    }
    ck.groups.push_back(std::move(mg));
  }
  Value* module_v = a.OrderedDict();
  Value* metadata = a.OrderedDict();
  for (const std::string& n : model.module_names())
    a.SetItem(metadata, n, t.Dict({{"version", a.Int(1)}}));
  // AutoEP's module state_dict is a filtered copy without _metadata (no module_names).
  if (!model.module_names().empty())
    ValueArena::SetState(module_v, t.Dict({{"_metadata", metadata}}));
  Value* root = t.Dict(
      {{"module", module_v},
       {"buffer_names", a.List()},
       {"optimizer", a.None()},
       {"param_shapes", a.None()},
       {"frozen_param_shapes", a.None()},
       {"shared_params", a.None()},
       {"frozen_param_fragments", a.None()},
       {"lr_scheduler", t.Dict({{"last_batch_iteration", a.Int(rq.lr_last_batch_iteration)}})},
       {"data_sampler", a.None()},
       {"random_ltd", a.None()},
       {"sparse_tensor_module_names", a.Set()},
       {"skipped_steps", a.Int(rq.skipped_steps)},
       {"global_steps", a.Int(rq.global_steps)},
       {"global_samples", a.Int(rq.global_samples)},
       {"dp_world_size", a.Int(e.dp())},
       {"mp_world_size", a.Int(tp)},
       {"checkpoint_parallel_dimensions",
        t.Dict({{"pp_degree", a.Int(1)}, {"tp_degree", a.Int(tp)}})},
       {"ds_config", t.Json(rq.ds_config)},
       {"ds_version", a.Str(kDsVersion)}});
  if (autoep) {
    std::vector<const Value*> counts;
    for (const auto& l : rq.autoep_layers) counts.push_back(a.Int(l["num_experts"].get<int64_t>()));
    a.SetItem(root, "num_experts", a.List(std::move(counts)));
    const Value* layers = t.Json(rq.autoep_layers);
    a.SetItem(root, "ds_autoep_layers", layers);
    a.SetItem(root, "universal_checkpoint_info",
              t.Dict({{"universal_checkpoint_version", a.Float(0.4)},
                      {"expert_parameter_patterns", a.List({a.Str(".*\\.experts\\.w[123]$")})},
                      {"ds_autoep_layers", layers}}));
  }
  for (const auto& [k, v] : rq.client_state.items()) {
    if (autoep && k == "universal_checkpoint_info") continue;
    // AutoTP engines save their own universal_checkpoint_info (in the client state's place).
    if (tp > 1 && k == "universal_checkpoint_info") {
      a.SetItem(root, k, TpUniversalInfo(model, t));
      continue;
    }
    a.SetItem(root, k, t.Json(v));
  }
  ck.model_states = root;
  Value* scaler = a.Object(a.Global("deepspeed.runtime.fp16.loss_scaler", "LossScaler"), a.Tuple(),
                           Value::Construction::kNewObj);
  ValueArena::SetState(scaler, t.Dict({{"cur_scale", a.Float(1.0)}, {"dynamic", a.Bool(false)}}));
  ck.optimizer_scalars = t.Dict({{"loss_scaler", scaler},
                                 {"dynamic_loss_scale", a.Bool(false)},
                                 {"overflow", a.Bool(false)},
                                 {"clip_grad", a.Float(e.config().gradient_clipping)},
                                 {"ds_version", a.Str(kDsVersion)}});
  ck.master_dtype = DType::kF32;
  ck.bf16_optimizer = e.config().fp32_grad_accum && e.config().stage == 1;
  ck.zero3 = e.config().stage == 3;
  ck.read = [tensors_owner](int param, sinks::MemoryTensor which, uint64_t offset,
                            absl::Span<std::byte> out) -> absl::Status {
    const at::Tensor& src = (*tensors_owner)[param][static_cast<int>(which)];
    if (!src.defined()) return absl::InternalError("no tensor for a requested state");
    const uint64_t size = static_cast<uint64_t>(src.numel()) * src.element_size();
    if (offset + out.size() > size) return absl::InternalError("read past a tensor");
    std::memcpy(out.data(), static_cast<const std::byte*>(src.data_ptr()) + offset, out.size());
    return absl::OkStatus();
  };
  ck.owner = std::make_shared<std::pair<std::shared_ptr<ValueArena>, decltype(tensors_owner)>>(
      t.arena(), tensors_owner);
  UCP_ASSIGN_OR_RETURN(sinks::ZeroSinkInput input, sinks::ZeroSinkInputFromMemory(std::move(ck)));
  input.mp_rank = mp_rank;
  return input;
}

// Moves every file of `from` into `to` (both folders exist).
absl::Status MoveFiles(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(from, ec)) {
    fs::rename(entry.path(), to / entry.path().filename(), ec);
    if (ec) break;
  }
  if (ec)
    return absl::InternalError(absl::StrCat("cannot move ", from.string(), ": ", ec.message()));
  return absl::OkStatus();
}

// Root: every TP rank's tensors (one rank without AutoTP) written as DeepSpeed's files, the tag
// folder staged and renamed into place, then `latest`.
absl::Status WriteOnRoot(Engine& e, const SaveRequest& rq,
                         const std::vector<std::vector<std::vector<at::Tensor>>>& rank_states,
                         const std::vector<std::vector<at::Tensor>>& rank_module) {
  sinks::ZeroTarget target;
  target.topology.dp = e.dp();
  target.topology.ep = rq.autoep_size;
  target.topology.use_data_before_expert_parallelism = rq.use_data_before_expert_parallelism;
  target.zero_stage = e.config().stage;
  target.tag = rq.tag;
  converters::execute::ExecuteOptions exec;
  exec.fsync = rq.fsync;
  std::error_code ec;
  fs::create_directories(rq.save_dir, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot create ", rq.save_dir, ": ", ec.message()));
  const std::string staging = (fs::path(rq.save_dir) / (".ucp-save-" + rq.tag)).string();
  fs::remove_all(staging, ec);  // a killed save's leftovers
  // Each TP rank's files (its mp_rank_XX model states and its DP group's optimizer shards) from
  // its own memory input, planned as the tp-1 lane it is, moved into one tag folder.
  const int tp = static_cast<int>(rank_module.size());
  for (int r = 0; r < tp; ++r) {
    UCP_ASSIGN_OR_RETURN(sinks::ZeroSinkInput input,
                         BuildInput(e, rq, rank_states[r], rank_module[r], r));
    const std::string out = r == 0 ? staging : absl::StrCat(staging, ".tp", r);
    fs::remove_all(out, ec);
    UCP_ASSIGN_OR_RETURN(converters::pipelines::ReshardResult res,
                         converters::pipelines::SaveZeroCheckpoint(input, target, out, exec));
    (void)res;
    if (r > 0) {
      UCP_RETURN_IF_ERROR(MoveFiles(fs::path(out) / rq.tag, fs::path(staging) / rq.tag));
      fs::remove_all(out, ec);
    }
  }
  const fs::path final_dir = fs::path(rq.save_dir) / rq.tag;
  const fs::path old_dir = fs::path(rq.save_dir) / (".ucp-old-" + rq.tag);
  fs::remove_all(old_dir, ec);
  if (fs::exists(final_dir)) fs::rename(final_dir, old_dir, ec);
  fs::rename(fs::path(staging) / rq.tag, final_dir, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot move the new tag folder to ", final_dir.string(), ": ", ec.message()));
  UCP_RETURN_IF_ERROR(
      WriteFileAtomic((fs::path(rq.save_dir) / "latest").string(), rq.tag, rq.fsync));
  fs::remove_all(staging, ec);
  fs::remove_all(old_dir, ec);
  return absl::OkStatus();
}

// On TP rank 0: every TP rank's slice of a TP-sharded parameter (undefined elsewhere). Slices
// differ along the parameter's slice dim only, so they travel padded to the largest.
std::vector<at::Tensor> GatherOverTp(const TpGroup& tp, const ModelParam& mp, const at::Tensor& t) {
  Comm& c = *tp.comm;
  at::Tensor n = at::full({1}, t.numel(), at::TensorOptions().dtype(at::kLong));
  at::Tensor counts = at::empty({tp.size}, at::TensorOptions().dtype(at::kLong));
  c.AllGather(n, counts);
  const int64_t widest = counts.max().item<int64_t>();
  at::Tensor padded = at::zeros({widest}, t.options());
  padded.narrow(0, 0, t.numel()).copy_(t.reshape({-1}));
  at::Tensor all;
  if (tp.rank == 0) all = at::empty({widest * tp.size}, t.options());
  c.Gather(padded, all, 0);
  std::vector<at::Tensor> out(static_cast<size_t>(tp.size));
  if (tp.rank != 0) return out;
  const int64_t per_row = t.numel() / std::max<int64_t>(1, t.size(mp.slice_dim));
  for (int r = 0; r < tp.size; ++r) {
    std::vector<int64_t> shape = t.sizes().vec();
    const int64_t numel = counts[r].item<int64_t>();
    shape[static_cast<size_t>(mp.slice_dim)] = per_row > 0 ? numel / per_row : 0;
    out[static_cast<size_t>(r)] = all.narrow(0, r * widest, numel).view(shape).clone();
  }
  return out;
}

}  // namespace

absl::Status SaveCheckpoint(Engine& engine, const SaveRequest& request) {
  const int root = 0;  // of the data-parallel group; with AutoTP, then of TP group 0
  std::vector<std::vector<at::Tensor>> states;
  for (StateTensor s : {StateTensor::kFp32, StateTensor::kExpAvg, StateTensor::kExpAvgSq})
    states.push_back(engine.GatherStates(s, root));
  std::vector<at::Tensor> module = engine.GatherModule(root);
  const TpGroup& tp = engine.tp();
  const int tp_size = tp.active() ? tp.size : 1;
  // rank_*[r]: TP rank r's tensors, gathered to global rank 0 from the DP roots (TP group 0).
  std::vector<std::vector<std::vector<at::Tensor>>> rank_states(static_cast<size_t>(tp_size),
                                                                states);
  std::vector<std::vector<at::Tensor>> rank_module(static_cast<size_t>(tp_size), module);
  const bool dp_root = engine.comm().rank() == root;
  if (tp.active() && dp_root) {
    const Model& model = engine.model();
    for (size_t p = 0; p < model.params().size(); ++p) {
      const ModelParam& mp = model.params()[p];
      if (!mp.tp_sharded) continue;  // replicated: equal on every TP rank
      auto spread = [&](const at::Tensor& t, auto set) {
        std::vector<at::Tensor> parts = GatherOverTp(tp, mp, t);
        for (int r = 0; r < tp.size; ++r) set(r, parts[static_cast<size_t>(r)]);
      };
      spread(module[p], [&](int r, const at::Tensor& x) { rank_module[r][p] = x; });
      for (int s = 0; s < 3; ++s) {
        if (!states[s][p].defined()) continue;
        spread(states[s][p], [&](int r, const at::Tensor& x) { rank_states[r][s][p] = x; });
      }
    }
  }
  absl::Status st = absl::OkStatus();
  if (dp_root && tp.rank == 0) st = WriteOnRoot(engine, request, rank_states, rank_module);
  // Every rank learns whether the save worked (a failed save is every rank's error): over the
  // DP group, then over the TP group, which together reach every rank.
  at::Tensor ok = at::full({1}, st.ok() ? 0.0 : 1.0);
  engine.comm().AllReduceMax(ok);
  if (tp.active()) tp.comm->AllReduceMax(ok);
  if (st.ok() && ok.item<double>() != 0) return absl::InternalError("the save failed on rank 0");
  return st;
}

}  // namespace ucp::runtime
