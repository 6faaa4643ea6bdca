// make_zero2_checkpoint: writes a DeepSpeed ZeRO-2, dp=4, fp32 checkpoint for the convert benchmark
// (bench/run_convert_bench.sh) with ucp's own torch.save writer (SaveTorchFile).
//
// The checkpoint has the structure of fixtures/deepspeed/s2_fp32_dp4 and of the baseline DeepSpeed
// run of /work/shared/harness/baseline.md (ds_case.py --variant big): the same model (TinyLM:
// Embedding V x D tied with the output head, a frozen positional table 16 x D, B pre-LN MLP blocks
// D -> 5D -> D with biases, a final LayerNorm, a head bias), the same two AdamW param groups
// ("decay": the 2-D weights; "no_decay": the rest), and the same files (deepspeed-formats.md §1-3):
//   OUT/latest                                          "global_step1"
//   OUT/global_step1/mp_rank_00_model_states.pt          module weights as views into each group's
//                                                        flat buffer (one storage per group, with
//                                                        its alignment padding), param_shapes,
//                                                        frozen_param_shapes/fragments, shared_params
//   OUT/global_step1/zero_pp_rank_R_mp_rank_00_optim_states.pt   per rank R < dp: per group a 0-dim
//                                                        step, exp_avg, exp_avg_sq (full partition),
//                                                        the padding-stripped fp32 partition,
//                                                        group_paddings, param_slice_mappings
// With the default size (D = 1024, V = 32000, 16 blocks) the model has exactly the baseline's
// 200,705,280 trainable + 16,384 frozen parameters (~3.2 GB of files). `--params N` picks the
// multiple-of-4 width D whose model is closest to N trainable parameters (V = 125 D / 4, 16
// blocks), for small runs. Values are deterministic: element i of group g's flat buffer is the
// same in the model file and in the owning rank's fp32 partition, padding is zero, exp_avg_sq >= 0.
//
// Usage: make_zero2_checkpoint --out DIR [--params N] [--dp W]
// Prints one line of key=value facts (params, width, files, bytes) and exits 0.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "formats/base/byte_sink.h"
#include "formats/base/status.h"
#include "formats/torch/torch_writer.h"

namespace ucp::bench {
namespace {

namespace ft = ::ucp::formats::torch;
using ft::StorageRef;
using ft::TensorRef;
using ft::Value;
using ft::ValueArena;

constexpr char kTag[] = "global_step1";
constexpr char kVersion[] = "0.19.6+edaa72212";
constexpr int kBlocks = 16;
constexpr int64_t kSeqLen = 16;
constexpr int64_t kGlobalBatch = 4;

struct Param {
  std::string name;
  std::vector<int64_t> shape;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

struct Group {
  std::string name;
  double weight_decay;
  std::vector<Param> params;  // flat order
  int64_t total = 0;          // Σ numel
  int64_t aligned = 0;        // flat length with alignment padding (§3.2)
  int64_t partition = 0;      // aligned / dp
  uint64_t seed = 0;
};

struct Model {
  int64_t width = 0, vocab = 0;
  std::vector<std::string> module_order;  // state_dict order (incl. pos and the tied head.weight)
  std::vector<Group> groups;              // decay, no_decay
  Param pos;                              // frozen
};

Model PlanModel(int64_t d, int dp) {
  Model m;
  m.width = d;
  m.vocab = 125 * d / 4;
  const int64_t v = m.vocab, f = 5 * d;
  m.pos = {"pos", {kSeqLen, d}};
  Group decay{"decay", 0.05, {{"embed.weight", {v, d}}}};
  Group no_decay{"no_decay", 0.0, {{"head_bias", {v}}}};
  m.module_order = {"pos", "head_bias", "embed.weight"};
  for (int b = 0; b < kBlocks; ++b) {
    const std::string p = absl::StrCat("blocks.", b, ".");
    for (const Param& q : {Param{p + "ln.weight", {d}}, Param{p + "ln.bias", {d}}, Param{p + "fc1.weight", {f, d}},
                           Param{p + "fc1.bias", {f}}, Param{p + "fc2.weight", {d, f}}, Param{p + "fc2.bias", {d}}}) {
      (q.shape.size() >= 2 ? decay : no_decay).params.push_back(q);
      m.module_order.push_back(q.name);
    }
  }
  for (const char* n : {"ln_f.weight", "ln_f.bias"}) {
    no_decay.params.push_back({n, {d}});
    m.module_order.push_back(n);
  }
  m.module_order.push_back("head.weight");
  m.groups = {std::move(decay), std::move(no_decay)};
  for (size_t g = 0; g < m.groups.size(); ++g) {
    Group& gr = m.groups[g];
    for (const Param& p : gr.params) gr.total += p.numel();
    const int64_t alignment = 2 * dp;
    gr.aligned = (gr.total + alignment - 1) / alignment * alignment;
    gr.partition = gr.aligned / dp;
    gr.seed = 1000 + g;
  }
  return m;
}

int64_t Trainable(const Model& m) { return m.groups[0].total + m.groups[1].total; }

// Element i of stream `seed`: a small pseudo-random fp32 (splitmix64), never the zero page.
inline float ValueAt(uint64_t seed, uint64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + (i + 1) * 0xD1B54A32D192ED03ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(static_cast<int32_t>(z)) * 0x1p-38f;
}

// What a storage holds: elements [begin, begin + numel) of stream `seed`, zero from `valid` on,
// absolute values when `nonneg` (exp_avg_sq), or the constant `constant` when seed == 0.
struct Fill {
  uint64_t seed = 0;
  int64_t begin = 0, valid = 0;
  bool nonneg = false;
  float constant = 0;
};

Buffer Materialize(const StorageRef& s, const Fill& fill) {
  const int64_t n = s.numel;
  std::shared_ptr<float> owner(new float[n], std::default_delete<float[]>());
  float* out = owner.get();
  for (int64_t i = 0; i < n; ++i) {
    float x = fill.seed == 0 ? fill.constant : i < fill.valid ? ValueAt(fill.seed, fill.begin + i) : 0.0f;
    out[i] = fill.nonneg ? std::fabs(x) : x;
  }
  return Buffer(std::move(owner), reinterpret_cast<const std::byte*>(out), static_cast<size_t>(n) * 4);
}

// Builds the value trees of one file; storages get their bytes lazily through Bytes().
class TreeBuilder {
 public:
  TreeBuilder(const Model& m, int dp) : m_(m), dp_(dp) {}

  ft::StorageBytesFn Bytes() const {
    return [this](const StorageRef& s) -> absl::StatusOr<Buffer> {
      auto it = fills_.find(&s);
      if (it == fills_.end()) return absl::InternalError("storage without a fill");
      return Materialize(s, it->second);
    };
  }

  const Value* ModelStates() {
    Value* module = a_.OrderedDict();
    absl::flat_hash_map<std::string, const Value*> tensors;
    const StorageRef* pos = Storage(m_.pos.numel(), {1, 0, m_.pos.numel()});
    tensors["pos"] = Tensor(pos, 0, m_.pos.shape, false);
    for (const Group& g : m_.groups) {
      const StorageRef* flat = Storage(g.aligned, {g.seed, 0, g.total});
      int64_t offset = 0;
      for (const Param& p : g.params) {
        tensors[p.name] = Tensor(flat, offset, p.shape, false);
        offset += p.numel();
      }
    }
    const TensorRef& embed = tensors["embed.weight"]->tensor();
    tensors["head.weight"] = Tensor(embed.storage, 0, {m_.vocab, m_.width}, false);
    for (const std::string& name : m_.module_order) a_.SetItem(module, name, tensors[name]);
    Value* metadata = a_.OrderedDict();
    std::vector<std::string> modules = {"", "embed", "blocks"};
    for (int b = 0; b < kBlocks; ++b) {
      for (const char* sub : {"", ".ln", ".fc1", ".fc2"}) modules.push_back(absl::StrCat("blocks.", b, sub));
    }
    for (const char* n : {"ln_f", "head"}) modules.push_back(n);
    for (const std::string& n : modules) a_.SetItem(metadata, n, Dict({{"version", a_.Int(1)}}));
    ValueArena::SetState(module, Dict({{"_metadata", metadata}}));

    Value* shapes = a_.List();
    for (const Group& g : m_.groups) {
      Value* od = a_.OrderedDict();
      for (const Param& p : g.params) a_.SetItem(od, p.name, Size(p.shape));
      ValueArena::Append(shapes, od);
    }
    Value* frozen_shapes = a_.OrderedDict();
    a_.SetItem(frozen_shapes, "pos", Size(m_.pos.shape));
    Value* frozen = a_.OrderedDict();
    a_.SetItem(frozen, "pos", tensors["pos"]);
    return Dict({{"module", module},
                 {"buffer_names", a_.List()},
                 {"optimizer", a_.None()},
                 {"param_shapes", shapes},
                 {"frozen_param_shapes", frozen_shapes},
                 {"shared_params", Dict({{"head.weight", a_.Str("embed.weight")}})},
                 {"frozen_param_fragments", frozen},
                 {"lr_scheduler", Dict({{"last_batch_iteration", a_.Int(0)}})},
                 {"data_sampler", a_.None()},
                 {"random_ltd", a_.None()},
                 {"sparse_tensor_module_names", a_.Set()},
                 {"skipped_steps", a_.Int(0)},
                 {"global_steps", a_.Int(1)},
                 {"global_samples", a_.Int(kGlobalBatch)},
                 {"dp_world_size", a_.Int(dp_)},
                 {"mp_world_size", a_.Int(1)},
                 {"checkpoint_parallel_dimensions", Dict({{"pp_degree", a_.Int(1)}, {"tp_degree", a_.Int(1)}})},
                 {"ds_config", DsConfig()},
                 {"ds_version", a_.Str(kVersion)},
                 {"universal_checkpoint_info", a_.Dict()},
                 {"iteration", a_.Int(1)}});
  }

  const Value* OptimStates(int rank) {
    Value* state = a_.Dict();
    Value* param_groups = a_.List();
    Value* fp32 = a_.List();
    Value* paddings = a_.List();
    Value* counts = a_.List();
    Value* mappings = a_.List();
    for (size_t g = 0; g < m_.groups.size(); ++g) {
      const Group& gr = m_.groups[g];
      const int64_t ps = rank * gr.partition, pe = ps + gr.partition;
      const int64_t padding = ps >= gr.total ? gr.partition : pe > gr.total ? pe - gr.total : 0;
      const int64_t valid = gr.partition - padding;
      Fill step;
      step.constant = 1.0f;
      const Value* per_group =
          Dict({{"step", Tensor(Storage(1, step), 0, {}, false)},
                {"exp_avg", Tensor(Storage(gr.partition, {gr.seed + 100, ps, valid}), 0, {gr.partition}, false)},
                {"exp_avg_sq",
                 Tensor(Storage(gr.partition, {gr.seed + 200, ps, valid, true}), 0, {gr.partition}, false)}});
      ValueArena::SetItem(state, a_.Int(static_cast<int64_t>(g)), per_group);
      ValueArena::Append(param_groups, ParamGroup(gr, static_cast<int64_t>(g)));
      ValueArena::Append(fp32, Tensor(Storage(gr.partition, {gr.seed, ps, valid}), 0, {valid}, true));
      ValueArena::Append(paddings, a_.Int(padding));
      ValueArena::Append(counts, a_.Int(dp_));
      ValueArena::Append(mappings, SliceMappings(gr, ps, pe));
    }
    Value* scaler = a_.Object(a_.Global("deepspeed.runtime.fp16.loss_scaler", "LossScaler"), a_.Tuple(),
                              Value::Construction::kNewObj);
    ValueArena::SetState(scaler, Dict({{"cur_scale", a_.Float(1.0)}, {"dynamic", a_.Bool(false)}}));
    const Value* stage = a_.Object(
        a_.Global("__builtin__", "getattr"),
        a_.Tuple({a_.Global("deepspeed.runtime.zero.config", "ZeroStageEnum"), a_.Str("gradients")}),
        Value::Construction::kReduce);
    const Value* osd = Dict({{"loss_scaler", scaler},
                             {"dynamic_loss_scale", a_.Bool(false)},
                             {"overflow", a_.Bool(false)},
                             {"clip_grad", a_.Float(1.0)},
                             {"base_optimizer_state", Dict({{"state", state}, {"param_groups", param_groups}})},
                             {"single_partition_of_fp32_groups", fp32},
                             {"zero_stage", stage},
                             {"group_paddings", paddings},
                             {"partition_count", counts},
                             {"ds_version", a_.Str(kVersion)},
                             {"param_slice_mappings", mappings}});
    return Dict({{"optimizer_state_dict", osd}, {"ds_config", DsConfig()}, {"ds_version", a_.Str(kVersion)}});
  }

 private:
  const StorageRef* Storage(int64_t numel, Fill fill) {
    StorageRef* s = a_.NewStorage({"", DType::kF32, "cpu", numel, false, std::nullopt});
    fills_[s] = fill;
    return s;
  }

  const Value* Tensor(const StorageRef* storage, int64_t offset, std::vector<int64_t> dims, bool requires_grad) {
    TensorRef t;
    t.storage = storage;
    t.dtype = DType::kF32;
    t.storage_offset = offset;
    t.shape = Shape(std::move(dims));
    t.stride = t.shape.ContiguousStrides();
    t.requires_grad = requires_grad;
    return a_.Tensor(std::move(t));
  }

  const Value* Size(const std::vector<int64_t>& dims) {
    Value* t = a_.Tuple();
    for (int64_t d : dims) ValueArena::Append(t, a_.Int(d));
    return a_.Object(a_.Global("torch", "Size"), a_.Tuple({t}), Value::Construction::kReduce);
  }

  Value* Dict(std::initializer_list<std::pair<absl::string_view, const Value*>> entries) {
    Value* d = a_.Dict();
    for (const auto& [key, value] : entries) a_.SetItem(d, key, value);
    return d;
  }

  const Value* Betas() { return a_.List({a_.Float(0.9), a_.Float(0.95)}); }

  const Value* ParamGroup(const Group& g, int64_t index) {
    return Dict({{"weight_decay", a_.Float(g.weight_decay)}, {"name", a_.Str(g.name)},
                 {"lr", a_.Float(0.01 / 3)}, {"betas", Betas()}, {"eps", a_.Float(1e-8)},
                 {"amsgrad", a_.Bool(false)}, {"foreach", a_.None()}, {"maximize", a_.Bool(false)},
                 {"capturable", a_.Bool(false)}, {"params", a_.List({a_.Int(index)})}});
  }

  // name → fragment_address(numel, start) for the params overlapping [ps, pe) (§3.3, §3.4).
  const Value* SliceMappings(const Group& g, int64_t ps, int64_t pe) {
    Value* od = a_.OrderedDict();
    int64_t lp_start = 0;
    for (const Param& p : g.params) {
      const int64_t fs = std::max(lp_start, ps), fe = std::min(lp_start + p.numel(), pe);
      if (fs < fe) {
        Value* addr = a_.Object(a_.Global("deepspeed.utils.tensor_fragment", "fragment_address"), a_.Tuple(),
                                Value::Construction::kNewObj);
        ValueArena::SetState(addr, Dict({{"numel", a_.Int(fe - fs)}, {"start", a_.Int(fs - ps)}}));
        a_.SetItem(od, p.name, addr);
      }
      lp_start += p.numel();
    }
    return od;
  }

  // ds_case.py's ds_config for --variant big (baseline.md).
  const Value* DsConfig() {
    const Value* adamw = Dict({{"type", a_.Str("AdamW")},
                               {"params", Dict({{"lr", a_.Float(0.01)}, {"betas", Betas()}, {"eps", a_.Float(1e-8)},
                                                {"weight_decay", a_.Float(0.05)}, {"torch_adam", a_.Bool(true)}})}});
    const Value* sched = Dict({{"type", a_.Str("WarmupLR")},
                               {"params", Dict({{"warmup_min_lr", a_.Float(0.0)}, {"warmup_max_lr", a_.Float(0.01)},
                                                {"warmup_num_steps", a_.Int(3)},
                                                {"warmup_type", a_.Str("linear")}})}});
    const Value* zero = Dict({{"stage", a_.Int(2)}, {"reduce_bucket_size", a_.Int(50000000)},
                              {"allgather_bucket_size", a_.Int(50000000)}});
    return Dict({{"train_batch_size", a_.Int(kGlobalBatch)},
                 {"train_micro_batch_size_per_gpu", a_.Int(kGlobalBatch / dp_ > 0 ? kGlobalBatch / dp_ : 1)},
                 {"gradient_accumulation_steps", a_.Int(1)}, {"steps_per_print", a_.Int(1000000)},
                 {"gradient_clipping", a_.Float(1.0)}, {"optimizer", adamw}, {"scheduler", sched},
                 {"zero_optimization", zero}, {"wall_clock_breakdown", a_.Bool(false)}});
  }

  const Model& m_;
  const int dp_;
  ValueArena a_;
  absl::flat_hash_map<const StorageRef*, Fill> fills_;
};

absl::Status WriteCheckpoint(const std::string& out, const Model& m, int dp, uint64_t* bytes) {
  const std::string tag_dir = absl::StrCat(out, "/", kTag);
  std::error_code ec;
  std::filesystem::create_directories(tag_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat(tag_dir, ": ", ec.message()));
  std::vector<std::string> files;
  {
    TreeBuilder b(m, dp);
    const Value* root = b.ModelStates();
    files.push_back(tag_dir + "/mp_rank_00_model_states.pt");
    UCP_RETURN_IF_ERROR(ft::SaveTorchFile(files.back(), *root, b.Bytes()));
  }
  for (int r = 0; r < dp; ++r) {
    TreeBuilder b(m, dp);
    const Value* root = b.OptimStates(r);
    files.push_back(absl::StrCat(tag_dir, "/zero_pp_rank_", r, "_mp_rank_00_optim_states.pt"));
    UCP_RETURN_IF_ERROR(ft::SaveTorchFile(files.back(), *root, b.Bytes()));
  }
  // `latest` last: a folder with it is complete.
  std::unique_ptr<ByteSink> sink;
  UCP_ASSIGN_OR_RETURN(sink, CreateFileSink(out + "/latest"));
  UCP_RETURN_IF_ERROR(sink->Append({reinterpret_cast<const std::byte*>(kTag), std::strlen(kTag)}));
  UCP_RETURN_IF_ERROR(sink->Commit());
  *bytes = 0;
  for (const std::string& f : files) *bytes += std::filesystem::file_size(f);
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  std::string out;
  int64_t params = 0;
  int dp = 4;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    bool ok = i + 1 < argc;
    if (ok && arg == "--out") {
      out = argv[++i];
    } else if (ok && arg == "--params") {
      ok = absl::SimpleAtoi(argv[++i], &params) && params > 0;
    } else if (ok && arg == "--dp") {
      ok = absl::SimpleAtoi(argv[++i], &dp) && dp > 0 && dp <= 1024;
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "usage: %s --out DIR [--params N] [--dp W]\n", argv[0]);
      return 2;
    }
  }
  if (out.empty()) {
    std::fprintf(stderr, "usage: %s --out DIR [--params N] [--dp W]\n", argv[0]);
    return 2;
  }
  int64_t width = 1024;  // the baseline model
  if (params > 0) {
    int64_t best = 4;
    for (int64_t d = 4; d <= 16384; d += 4) {
      if (std::llabs(Trainable(PlanModel(d, dp)) - params) < std::llabs(Trainable(PlanModel(best, dp)) - params)) best = d;
      if (Trainable(PlanModel(d, dp)) > params) break;
    }
    width = best;
  }
  const Model m = PlanModel(width, dp);
  uint64_t bytes = 0;
  if (absl::Status st = WriteCheckpoint(out, m, dp, &bytes); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  std::printf("params=%lld frozen=%lld width=%lld vocab=%lld dp=%d files=%d bytes=%llu dir=%s/%s\n",
              static_cast<long long>(Trainable(m)), static_cast<long long>(m.pos.numel()),
              static_cast<long long>(m.width), static_cast<long long>(m.vocab), dp, dp + 1,
              static_cast<unsigned long long>(bytes), out.c_str(), kTag);
  return 0;
}

}  // namespace
}  // namespace ucp::bench

int main(int argc, char** argv) { return ucp::bench::Main(argc, argv); }
