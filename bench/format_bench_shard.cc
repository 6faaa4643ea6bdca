#include "bench/format_bench_shard.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "formats/base/buffer.h"
#include "ucp/shard_layout.h"

namespace ucp::bench {
namespace {

namespace ft = ::ucp::formats::torch;
using ft::StorageRef;
using ft::TensorRef;
using ft::Value;
using ft::ValueArena;

constexpr int kLayers = 24;
constexpr int64_t kHidden = 1024;
constexpr int64_t kVocab = 128256;
constexpr int64_t kDpSize = 4;
constexpr int64_t kDpRank = 0;
constexpr int64_t kStep = 1000;

void Partition(Group& g) {
  ucp::GroupSpec spec{ucp::PartitionKind::kFlat, {}};
  for (const Param& p : g.params) spec.numels.push_back(p.numel);
  ucp::Topology topology;
  topology.dp = kDpSize;
  const ucp::RankShard shard = ucp::ShardLayout(std::move(spec), topology).Shard(kDpRank);
  g.partition = shard.size;
  g.padding = shard.padding;
}

}  // namespace

std::vector<Group> PlanGroups() {
  const int64_t h = kHidden;
  const double base_lr = 3e-4;
  std::vector<Group> groups;
  groups.push_back({"embedding",
                    base_lr * std::pow(0.9, kLayers),
                    0.1,
                    {{"tok_embeddings.weight", kVocab * h}}});
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = absl::StrCat("layers.", l, ".");
    const double lr = base_lr * std::pow(0.9, kLayers - 1 - l);
    groups.push_back({absl::StrCat(p, "decay"),
                      lr,
                      0.1,
                      {{p + "attention.wqkv.weight", 3 * h * h},
                       {p + "attention.wo.weight", h * h},
                       {p + "feed_forward.w1.weight", 4 * h * h},
                       {p + "feed_forward.w2.weight", 4 * h * h}}});
    groups.push_back({absl::StrCat(p, "no_decay"),
                      lr,
                      0.0,
                      {{p + "attention_norm.weight", h},
                       {p + "attention_norm.bias", h},
                       {p + "attention.wqkv.bias", 3 * h},
                       {p + "attention.wo.bias", h},
                       {p + "ffn_norm.weight", h},
                       {p + "ffn_norm.bias", h},
                       {p + "feed_forward.w1.bias", 4 * h},
                       {p + "feed_forward.w2.bias", h}}});
  }
  groups.push_back({"final_norm", base_lr, 0.0, {{"norm.weight", h}, {"norm.bias", h}}});
  for (Group& g : groups) Partition(g);
  return groups;
}

namespace {

// ---- The value tree (§2.2), built with ValueArena. -------------------------------------------

// `n` pseudo-random fp32 values of magnitude < 2^-7 (splitmix64), so no page is the zero page.
Buffer RandomF32(int64_t n, uint64_t seed) {
  std::shared_ptr<float> owner(new float[n], std::default_delete<float[]>());
  float* out = owner.get();
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < n; ++i) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    out[i] = static_cast<float>(static_cast<int32_t>(z)) * 0x1p-38f;
  }
  return Buffer(std::move(owner), reinterpret_cast<const std::byte*>(out),
                static_cast<size_t>(n) * 4);
}

class ShardBuilder {
 public:
  explicit ShardBuilder(ValueArena& arena) : a_(arena) {}

  const Value* Build(const std::vector<Group>& groups) {
    Value* osd = a_.Dict();
    Value* scaler = a_.Object(a_.Global("deepspeed.runtime.fp16.loss_scaler", "LossScaler"),
                              a_.Tuple(), Value::Construction::kNewObj);
    ValueArena::SetState(scaler, Dict({{"cur_scale", a_.Float(1.0)}, {"dynamic", a_.Bool(false)}}));
    a_.SetItem(osd, "loss_scaler", scaler);
    a_.SetItem(osd, "dynamic_loss_scale", a_.Bool(false));
    a_.SetItem(osd, "overflow", a_.Bool(false));
    a_.SetItem(osd, "clip_grad", a_.Float(1.0));
    Value* state = a_.Dict();
    Value* param_groups = a_.List();
    Value* fp32_groups = a_.List();
    Value* paddings = a_.List();
    Value* counts = a_.List();
    Value* mappings = a_.List();
    for (size_t g = 0; g < groups.size(); ++g) {
      const Group& group = groups[g];
      const Value* per_group =
          Dict({{"step", StepTensor()},
                {"exp_avg", VectorTensor(group.partition, group.partition, false)},
                {"exp_avg_sq", VectorTensor(group.partition, group.partition, false)}});
      ValueArena::SetItem(state, a_.Int(static_cast<int64_t>(g)), per_group);
      ValueArena::Append(param_groups, ParamGroup(group, static_cast<int64_t>(g)));
      // Padding-stripped view on the full partition (§2.2).
      ValueArena::Append(fp32_groups,
                         VectorTensor(group.partition, group.partition - group.padding, true));
      ValueArena::Append(paddings, a_.Int(group.padding));
      ValueArena::Append(counts, a_.Int(kDpSize));
      ValueArena::Append(mappings, SliceMappings(group));
    }
    a_.SetItem(osd, "base_optimizer_state",
               Dict({{"state", state}, {"param_groups", param_groups}}));
    a_.SetItem(osd, "single_partition_of_fp32_groups", fp32_groups);
    Value* stage_args = a_.Tuple(
        {a_.Global("deepspeed.runtime.zero.config", "ZeroStageEnum"), a_.Str("gradients")});
    a_.SetItem(
        osd, "zero_stage",
        a_.Object(a_.Global("__builtin__", "getattr"), stage_args, Value::Construction::kReduce));
    a_.SetItem(osd, "group_paddings", paddings);
    a_.SetItem(osd, "partition_count", counts);
    a_.SetItem(osd, "ds_version", a_.Str("0.14.4"));
    a_.SetItem(osd, "param_slice_mappings", mappings);
    return Dict({{"optimizer_state_dict", osd},
                 {"ds_config", DsConfig()},
                 {"ds_version", a_.Str("0.14.4")}});
  }

 private:
  // torch.optim's per-group `step`: a 0-dim fp32 tensor on a 1-element storage.
  const Value* StepTensor() {
    const float step = static_cast<float>(kStep);
    Buffer bytes =
        Buffer::CopyOf(absl::Span<const std::byte>(reinterpret_cast<const std::byte*>(&step), 4));
    return Tensor(a_.NewStorage({"", DType::kF32, "cpu", 1, false, std::move(bytes)}), Shape{},
                  false);
  }

  // A 1-D fp32 tensor of the first `numel` elements of a new storage of `storage_numel`.
  const Value* VectorTensor(int64_t storage_numel, int64_t numel, bool requires_grad) {
    StorageRef* s = a_.NewStorage(
        {"", DType::kF32, "cpu", storage_numel, false, RandomF32(storage_numel, ++seed_)});
    return Tensor(s, Shape{numel}, requires_grad);
  }

  const Value* Tensor(const StorageRef* storage, Shape shape, bool requires_grad) {
    TensorRef t;
    t.storage = storage;
    t.dtype = DType::kF32;
    t.stride = shape.ContiguousStrides();
    t.shape = std::move(shape);
    t.requires_grad = requires_grad;
    return a_.Tensor(std::move(t));
  }

  // A str-keyed dict in the given order.
  Value* Dict(std::initializer_list<std::pair<absl::string_view, const Value*>> entries) {
    Value* d = a_.Dict();
    for (const auto& [key, value] : entries) a_.SetItem(d, key, value);
    return d;
  }

  const Value* ParamGroup(const Group& group, int64_t index) {
    return Dict({{"lr", a_.Float(group.lr)},
                 {"betas", a_.List({a_.Float(0.9), a_.Float(0.95)})},
                 {"eps", a_.Float(1e-8)},
                 {"weight_decay", a_.Float(group.weight_decay)},
                 {"amsgrad", a_.Bool(false)},
                 {"foreach", a_.None()},
                 {"maximize", a_.Bool(false)},
                 {"capturable", a_.Bool(false)},
                 {"differentiable", a_.Bool(false)},
                 {"fused", a_.None()},
                 {"name", a_.Str(group.name)},
                 {"params", a_.List({a_.Int(index)})}});
  }

  // OrderedDict name → fragment_address(numel, start) for the params overlapping this rank (§3.3).
  const Value* SliceMappings(const Group& group) {
    Value* od = a_.OrderedDict();
    const int64_t ps = kDpRank * group.partition;
    const int64_t pe = ps + group.partition;
    int64_t lp_start = 0;
    for (const Param& p : group.params) {
      const int64_t fs = std::max(lp_start, ps);
      const int64_t fe = std::min(lp_start + p.numel, pe);
      if (fs < fe) {
        Value* addr = a_.Object(a_.Global("deepspeed.utils.tensor_fragment", "fragment_address"),
                                a_.Tuple(), Value::Construction::kNewObj);
        ValueArena::SetState(addr, Dict({{"numel", a_.Int(fe - fs)}, {"start", a_.Int(fs - ps)}}));
        a_.SetItem(od, p.name, addr);
      }
      lp_start += p.numel;
    }
    return od;
  }

  const Value* DsConfig() {
    const Value* adamw = Dict({{"type", a_.Str("AdamW")},
                               {"params", Dict({{"lr", a_.Float(3e-4)},
                                                {"betas", a_.List({a_.Float(0.9), a_.Float(0.95)})},
                                                {"eps", a_.Float(1e-8)},
                                                {"weight_decay", a_.Float(0.1)}})}});
    const Value* zero = Dict({{"stage", a_.Int(2)},
                              {"overlap_comm", a_.Bool(true)},
                              {"contiguous_gradients", a_.Bool(true)},
                              {"reduce_bucket_size", a_.Int(500000000)},
                              {"allgather_bucket_size", a_.Int(500000000)}});
    return Dict({{"train_batch_size", a_.Int(512)},
                 {"train_micro_batch_size_per_gpu", a_.Int(8)},
                 {"gradient_accumulation_steps", a_.Int(16)},
                 {"gradient_clipping", a_.Float(1.0)},
                 {"steps_per_print", a_.Int(100)},
                 {"optimizer", adamw},
                 {"zero_optimization", zero},
                 {"wall_clock_breakdown", a_.Bool(false)}});
  }

  ValueArena& a_;
  uint64_t seed_ = 0;
};

}  // namespace

const Shard& InMemoryShard() {
  static const Shard* shard = [] {
    auto* s = new Shard{std::make_shared<ValueArena>(), nullptr};
    s->root = ShardBuilder(*s->arena).Build(PlanGroups());
    return s;
  }();
  return *shard;
}

}  // namespace ucp::bench
