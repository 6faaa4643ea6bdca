// make_zero2_checkpoint: writes a DeepSpeed ZeRO-2, dp=4, fp32 checkpoint for the convert benchmark
// (bench/run_convert_bench.sh) through ucp's ZeRO sink from memory (converters/sinks/zero/
// memory_input.h, the API the training runtime saves through): the model is described once and
// every tensor's bytes are computed when the executor asks for them.
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
//                                                        frozen_param_shapes/fragments,
//                                                        shared_params
//   OUT/global_step1/zero_pp_rank_R_mp_rank_00_optim_states.pt   per rank R < dp: per group a 0-dim
//                                                        step, exp_avg, exp_avg_sq (full
//                                                        partition), the padding-stripped fp32
//                                                        partition, group_paddings,
//                                                        param_slice_mappings
// With the default size (D = 1024, V = 32000, 16 blocks) the model has exactly the baseline's
// 200,705,280 trainable + 16,384 frozen parameters (~3.2 GB of files). `--params N` picks the
// multiple-of-4 width D whose model is closest to N trainable parameters (V = 125 D / 4, 16
// blocks), for small runs. Values are deterministic: element i of group g's flat buffer is the
// same in the model file and in the owning rank's fp32 partition, padding is zero, exp_avg_sq >= 0.
// The output folder also gets the sink's ucp_manifest.json.
//
// Usage: make_zero2_checkpoint --out DIR [--params N] [--dp W]
// Prints one line of key=value facts (params, width, files, bytes) and exits 0.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "converters/pipelines/reshard.h"
#include "converters/sinks/zero/memory_input.h"
#include "formats/base/status.h"
#include "formats/torch/pickle_value.h"

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
  uint64_t seed = 0;
};

struct Model {
  int64_t width = 0, vocab = 0;
  std::vector<std::string> module_order;  // state_dict order (incl. pos and the tied head.weight)
  std::vector<Group> groups;              // decay, no_decay
  Param pos;                              // frozen
};

Model PlanModel(int64_t d) {
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
    for (const Param& q : {Param{p + "ln.weight", {d}}, Param{p + "ln.bias", {d}},
                           Param{p + "fc1.weight", {f, d}}, Param{p + "fc1.bias", {f}},
                           Param{p + "fc2.weight", {d, f}}, Param{p + "fc2.bias", {d}}}) {
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

namespace sinks = ::ucp::converters::sinks;

// One tensor the sink asks for: `which` of module parameter `param`.
struct Stream {
  uint64_t seed = 0;    // ValueAt stream
  int64_t begin = 0;    // element of the stream at the tensor's first element
  bool nonneg = false;  // exp_avg_sq
};

// The skeleton, parameters and byte callback of the model's checkpoint (memory_input.h).
class CheckpointBuilder {
 public:
  CheckpointBuilder(const Model& m, int dp) : m_(m), dp_(dp) {}

  sinks::MemoryCheckpoint Build() {
    sinks::MemoryCheckpoint ck;
    ck.name = "<make_zero2_checkpoint>";
    absl::flat_hash_map<std::string, std::pair<int, int64_t>>
        trainable;  // name -> (group, lp start)
    for (size_t g = 0; g < m_.groups.size(); ++g) {
      int64_t lp = 0;
      for (const Param& p : m_.groups[g].params) {
        trainable[p.name] = {static_cast<int>(g), lp};
        lp += p.numel();
      }
    }
    absl::flat_hash_map<std::string, int> index;
    for (const std::string& name : m_.module_order) {
      sinks::MemoryParam p;
      p.name = name;
      index[name] = static_cast<int>(ck.params.size());
      std::array<Stream, 4> streams;
      if (name == "head.weight") {
        p.role = sinks::MemoryParamRole::kTied;
        p.tied_to = "embed.weight";
        p.shape = Shape({m_.vocab, m_.width});
      } else if (name == "pos") {
        p.role = sinks::MemoryParamRole::kFrozen;
        p.shape = Shape(m_.pos.shape);
        streams[0] = {1, 0, false};
      } else {
        const auto [g, lp] = trainable.at(name);
        const uint64_t seed = m_.groups[g].seed;
        p.group = g;
        p.shape = Shape(Find(name).shape);
        streams = {Stream{seed, lp}, Stream{seed, lp}, Stream{seed + 100, lp},
                   Stream{seed + 200, lp, true}};
      }
      ck.params.push_back(std::move(p));
      streams_.push_back(streams);
    }
    for (size_t g = 0; g < m_.groups.size(); ++g) {
      sinks::MemoryGroup group;
      group.hyperparameters = ParamGroup(m_.groups[g], static_cast<int64_t>(g));
      group.step = Step(&ck);
      for (const Param& p : m_.groups[g].params) group.params.push_back(index.at(p.name));
      ck.groups.push_back(std::move(group));
    }
    ck.model_states = ModelStates();
    ck.optimizer_scalars = OptimizerScalars();
    ck.read = [this](int param, sinks::MemoryTensor which, uint64_t offset,
                     absl::Span<std::byte> out) {
      return Read(streams_[param][static_cast<int>(which)], offset, out);
    };
    return ck;
  }

 private:
  const Param& Find(const std::string& name) const {
    for (const Group& g : m_.groups) {
      for (const Param& p : g.params) {
        if (p.name == name) return p;
      }
    }
    return m_.pos;
  }

  // Bytes [offset, offset + out.size()) of a stream's fp32 elements.
  static absl::Status Read(const Stream& s, uint64_t offset, absl::Span<std::byte> out) {
    const uint64_t first = offset / 4, last = (offset + out.size() + 3) / 4;
    std::vector<float> values(last - first);
    for (uint64_t i = first; i < last; ++i) {
      const float x = ValueAt(s.seed, static_cast<uint64_t>(s.begin) + i);
      values[i - first] = s.nonneg ? std::fabs(x) : x;
    }
    std::memcpy(out.data(),
                reinterpret_cast<const std::byte*>(values.data()) + (offset - first * 4),
                out.size());
    return absl::OkStatus();
  }

  // A 0-dim fp32 tensor 1.0 (the step), its bytes given to the checkpoint.
  const Value* Step(sinks::MemoryCheckpoint* ck) {
    const StorageRef* storage = a_->NewStorage({"0", DType::kF32, "cpu", 1, false, std::nullopt});
    const float one = 1.0f;
    std::vector<std::byte> bytes(4);
    std::memcpy(bytes.data(), &one, 4);
    ck->storages[storage] = Buffer::FromVector(std::move(bytes));
    TensorRef t;
    t.storage = storage;
    t.dtype = DType::kF32;
    return a_->Tensor(std::move(t));
  }

  // The model-states dict: the sink fills module entries, buffer_names, optimizer, param_shapes,
  // frozen_param_*, shared_params and dp_world_size (None placeholders keep DeepSpeed's key order).
  const Value* ModelStates() {
    Value* module = a_->OrderedDict();
    Value* metadata = a_->OrderedDict();
    std::vector<std::string> modules = {"", "embed", "blocks"};
    for (int b = 0; b < kBlocks; ++b) {
      for (const char* sub : {"", ".ln", ".fc1", ".fc2"})
        modules.push_back(absl::StrCat("blocks.", b, sub));
    }
    for (const char* n : {"ln_f", "head"}) modules.push_back(n);
    for (const std::string& n : modules) a_->SetItem(metadata, n, Dict({{"version", a_->Int(1)}}));
    ValueArena::SetState(module, Dict({{"_metadata", metadata}}));
    return Dict({{"module", module},
                 {"buffer_names", a_->List()},
                 {"optimizer", a_->None()},
                 {"param_shapes", a_->None()},
                 {"frozen_param_shapes", a_->None()},
                 {"shared_params", a_->None()},
                 {"frozen_param_fragments", a_->None()},
                 {"lr_scheduler", Dict({{"last_batch_iteration", a_->Int(0)}})},
                 {"data_sampler", a_->None()},
                 {"random_ltd", a_->None()},
                 {"sparse_tensor_module_names", a_->Set()},
                 {"skipped_steps", a_->Int(0)},
                 {"global_steps", a_->Int(1)},
                 {"global_samples", a_->Int(kGlobalBatch)},
                 {"dp_world_size", a_->Int(dp_)},
                 {"mp_world_size", a_->Int(1)},
                 {"checkpoint_parallel_dimensions",
                  Dict({{"pp_degree", a_->Int(1)}, {"tp_degree", a_->Int(1)}})},
                 {"ds_config", DsConfig()},
                 {"ds_version", a_->Str(kVersion)},
                 {"universal_checkpoint_info", a_->Dict()},
                 {"iteration", a_->Int(1)}});
  }

  const Value* OptimizerScalars() {
    Value* scaler = a_->Object(a_->Global("deepspeed.runtime.fp16.loss_scaler", "LossScaler"),
                               a_->Tuple(), Value::Construction::kNewObj);
    ValueArena::SetState(scaler,
                         Dict({{"cur_scale", a_->Float(1.0)}, {"dynamic", a_->Bool(false)}}));
    return Dict({{"loss_scaler", scaler},
                 {"dynamic_loss_scale", a_->Bool(false)},
                 {"overflow", a_->Bool(false)},
                 {"clip_grad", a_->Float(1.0)},
                 {"ds_version", a_->Str(kVersion)}});
  }

  Value* Dict(std::initializer_list<std::pair<absl::string_view, const Value*>> entries) {
    Value* d = a_->Dict();
    for (const auto& [key, value] : entries) a_->SetItem(d, key, value);
    return d;
  }

  const Value* Betas() { return a_->List({a_->Float(0.9), a_->Float(0.95)}); }

  const Value* ParamGroup(const Group& g, int64_t index) {
    return Dict({{"weight_decay", a_->Float(g.weight_decay)},
                 {"name", a_->Str(g.name)},
                 {"lr", a_->Float(0.01 / 3)},
                 {"betas", Betas()},
                 {"eps", a_->Float(1e-8)},
                 {"amsgrad", a_->Bool(false)},
                 {"foreach", a_->None()},
                 {"maximize", a_->Bool(false)},
                 {"capturable", a_->Bool(false)},
                 {"params", a_->List({a_->Int(index)})}});
  }

  // ds_case.py's ds_config for --variant big (baseline.md).
  const Value* DsConfig() {
    const Value* adamw = Dict({{"type", a_->Str("AdamW")},
                               {"params", Dict({{"lr", a_->Float(0.01)},
                                                {"betas", Betas()},
                                                {"eps", a_->Float(1e-8)},
                                                {"weight_decay", a_->Float(0.05)},
                                                {"torch_adam", a_->Bool(true)}})}});
    const Value* sched = Dict({{"type", a_->Str("WarmupLR")},
                               {"params", Dict({{"warmup_min_lr", a_->Float(0.0)},
                                                {"warmup_max_lr", a_->Float(0.01)},
                                                {"warmup_num_steps", a_->Int(3)},
                                                {"warmup_type", a_->Str("linear")}})}});
    const Value* zero = Dict({{"stage", a_->Int(2)},
                              {"reduce_bucket_size", a_->Int(50000000)},
                              {"allgather_bucket_size", a_->Int(50000000)}});
    return Dict({{"train_batch_size", a_->Int(kGlobalBatch)},
                 {"train_micro_batch_size_per_gpu",
                  a_->Int(kGlobalBatch / dp_ > 0 ? kGlobalBatch / dp_ : 1)},
                 {"gradient_accumulation_steps", a_->Int(1)},
                 {"steps_per_print", a_->Int(1000000)},
                 {"gradient_clipping", a_->Float(1.0)},
                 {"optimizer", adamw},
                 {"scheduler", sched},
                 {"zero_optimization", zero},
                 {"wall_clock_breakdown", a_->Bool(false)}});
  }

  const Model& m_;
  const int dp_;
  std::shared_ptr<ValueArena> a_ = std::make_shared<ValueArena>();
  std::vector<std::array<Stream, 4>>
      streams_;  // per MemoryParam: weight, fp32, exp_avg, exp_avg_sq

 public:
  std::shared_ptr<const ValueArena> arena() const { return a_; }
};

absl::Status WriteCheckpoint(const std::string& out, const Model& m, int dp, uint64_t* bytes) {
  CheckpointBuilder builder(m, dp);
  sinks::MemoryCheckpoint ck = builder.Build();
  ck.owner = builder.arena();
  UCP_ASSIGN_OR_RETURN(sinks::ZeroSinkInput input, sinks::ZeroSinkInputFromMemory(std::move(ck)));
  sinks::ZeroTarget target;
  target.topology.dp = dp;
  target.zero_stage = 2;
  target.tag = kTag;
  converters::execute::ExecuteOptions execute;
  UCP_ASSIGN_OR_RETURN(converters::pipelines::ReshardResult r,
                       converters::pipelines::SaveZeroCheckpoint(input, target, out, execute));
  *bytes = r.bytes;
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
      if (std::llabs(Trainable(PlanModel(d)) - params) <
          std::llabs(Trainable(PlanModel(best)) - params))
        best = d;
      if (Trainable(PlanModel(d)) > params) break;
    }
    width = best;
  }
  const Model m = PlanModel(width);
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
