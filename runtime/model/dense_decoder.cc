#include "runtime/model/dense_decoder.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/normal.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <limits>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/model/decoder_blocks.h"

namespace ucp::runtime {
namespace {

class DenseDecoder : public Model {
 public:
  explicit DenseDecoder(const DenseDecoderShape& s) : s_(s) {
    const int64_t H = s.hidden, I = s.intermediate, hd = s.head_dim;
    const bool qkv_bias = s.attention_bias || s.model_type == "qwen2";
    const bool o_bias = s.attention_bias && s.model_type != "qwen2";
    AddParam("model.embed_tokens.weight", {s.vocab, H});
    for (int64_t l = 0; l < s.layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      layer_first_.push_back(static_cast<int>(params_.size()));
      for (const char* n : {"q", "k", "v"}) {
        const int64_t out = (std::string(n) == "q" ? s.heads : s.kv_heads) * hd;
        AddParam(p + "self_attn." + n + "_proj.weight", {out, H});
        if (qkv_bias) AddParam(p + "self_attn." + n + "_proj.bias", {out});
      }
      AddParam(p + "self_attn.o_proj.weight", {H, s.heads * hd});
      if (o_bias) AddParam(p + "self_attn.o_proj.bias", {H});
      if (s.model_type == "qwen3") {
        AddParam(p + "self_attn.q_norm.weight", {hd});
        AddParam(p + "self_attn.k_norm.weight", {hd});
      }
      AddParam(p + "mlp.gate_proj.weight", {I, H});
      AddParam(p + "mlp.up_proj.weight", {I, H});
      AddParam(p + "mlp.down_proj.weight", {H, I});
      AddParam(p + "input_layernorm.weight", {H});
      AddParam(p + "post_attention_layernorm.weight", {H});
    }
    layer_first_.push_back(static_cast<int>(params_.size()));
    AddParam("model.norm.weight", {H});
    if (!s.tie_word_embeddings) AddParam("lm_head.weight", {s.vocab, H});
    for (const ModelParam& p : params_) state_dict_order_.push_back(p.name);
    if (s.tp_size > 1) ShardForTp();
    if (s.tie_word_embeddings) {
      state_dict_order_.push_back("lm_head.weight");
      tied_.push_back({"lm_head.weight", "model.embed_tokens.weight"});
    }
    module_names_ = {"", "model", "model.embed_tokens", "model.layers"};
    for (int64_t l = 0; l < s.layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l);
      std::vector<std::string> subs = {"",
                                       ".self_attn",
                                       ".self_attn.q_proj",
                                       ".self_attn.k_proj",
                                       ".self_attn.v_proj",
                                       ".self_attn.o_proj"};
      if (s.model_type == "qwen3") {
        subs.push_back(".self_attn.q_norm");
        subs.push_back(".self_attn.k_norm");
      }
      for (const char* m : {".mlp", ".mlp.gate_proj", ".mlp.up_proj", ".mlp.down_proj",
                            ".input_layernorm", ".post_attention_layernorm"})
        subs.push_back(m);
      for (const std::string& sub : subs) module_names_.push_back(p + sub);
    }
    module_names_.push_back("model.norm");
    module_names_.push_back("lm_head");
  }

  std::string type() const override { return s_.model_type; }
  void SetTpGroup(const TpGroup& tp) override { tp_ = tp; }
  void SetSpGroup(const TpGroup& sp) override { sp_ = sp; }
  int num_units() const override { return static_cast<int>(s_.layers) + 2; }

  std::vector<int> UnitParams(int unit) const override {
    if (unit == 0) return {0};
    if (unit == num_units() - 1) {
      const int norm = layer_first_.back();
      return {norm, s_.tie_word_embeddings ? 0 : norm + 1};
    }
    std::vector<int> out;
    for (int i = layer_first_[unit - 1]; i < layer_first_[unit]; ++i) out.push_back(i);
    return out;
  }

  at::Tensor Unit(int unit, const at::Tensor& in, const at::Tensor& targets) override {
    if (unit == 0) return at::embedding(params_[0].value, in);
    if (unit == num_units() - 1) {
      const std::vector<int> p = UnitParams(unit);
      at::Tensor hidden = RmsNorm(in, params_[p[0]].value);
      at::Tensor logits;
      if (tp_.active() && !s_.tie_word_embeddings && !head_widths_.empty()) {
        // lm_head colwise_gather_output: this rank's vocabulary rows, the logits gathered.
        logits = GatherColumns(tp_, at::linear(CopyToTp(tp_, hidden), params_[p[1]].value),
                               head_widths_);
      } else {
        logits = at::linear(hidden, params_[p[1]].value);
      }
      return at::cross_entropy_loss(logits.to(at::kFloat).reshape({-1, s_.vocab}),
                                    targets.reshape({-1}));
    }
    const std::string p = "model.layers." + std::to_string(unit - 1) + ".";
    at::Tensor h = in + Attention(p, RmsNorm(in, V(p + "input_layernorm.weight")));
    at::Tensor x = RmsNorm(h, V(p + "post_attention_layernorm.weight"));
    // Column-parallel gate / up, row-parallel down under AutoTP (each a plain linear without).
    at::Tensor gate = at::linear(CopyToTp(tp_, x), V(p + "mlp.gate_proj.weight"));
    at::Tensor up = at::linear(CopyToTp(tp_, x), V(p + "mlp.up_proj.weight"));
    return h + ReduceFromTp(tp_, at::linear(at::silu(gate) * up, V(p + "mlp.down_proj.weight")));
  }

  at::Tensor InitialValue(int param, uint64_t seed) const override {
    const ModelParam& p = params_[param];
    if (p.shape.size() == 1) {
      const bool norm = p.name.find("norm") != std::string::npos;
      return norm ? at::ones(p.shape) : at::zeros(p.shape);
    }
    // The whole tensor, then this rank's slice: every tp starts from the same weights.
    at::Generator g = at::detail::createCPUGenerator(seed * 7919 + static_cast<uint64_t>(param));
    return p.Slice(at::normal(0.0, 0.02, p.global_shape(), g)).clone();  // HF initializer_range
  }

 private:
  const at::Tensor& V(const std::string& name) const { return params_[index_.at(name)].value; }
  // A parameter that may be absent (biases, q/k norms).
  const at::Tensor* Bias(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &params_[it->second].value;
  }
  at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w) const {
    return ucp::runtime::RmsNorm(x, w, s_.rms_norm_eps);
  }

  at::Tensor Attention(const std::string& p, const at::Tensor& x) const {
    auto opt = [&](const std::string& name) {
      const at::Tensor* t = Bias(name);
      return t != nullptr ? *t : at::Tensor();
    };
    GqaWeights w;
    w.q = V(p + "self_attn.q_proj.weight");
    w.k = V(p + "self_attn.k_proj.weight");
    w.v = V(p + "self_attn.v_proj.weight");
    w.o = V(p + "self_attn.o_proj.weight");
    w.q_bias = opt(p + "self_attn.q_proj.bias");
    w.k_bias = opt(p + "self_attn.k_proj.bias");
    w.v_bias = opt(p + "self_attn.v_proj.bias");
    w.o_bias = opt(p + "self_attn.o_proj.bias");
    w.q_norm = opt(p + "self_attn.q_norm.weight");
    w.k_norm = opt(p + "self_attn.k_norm.weight");
    // replicated_with_grad_allreduce: the norms act on this rank's heads only.
    if (w.q_norm.defined()) w.q_norm = CopyToTp(tp_, w.q_norm);
    if (w.k_norm.defined()) w.k_norm = CopyToTp(tp_, w.k_norm);
    w.tp = &tp_;
    w.sp = &sp_;
    return GqaAttention(x, w, s_.head_dim, s_.rms_norm_eps, s_.rope_theta);
  }

  // AutoTP: each parameter's slice on this rank, by the tp_plan's style and DeepSpeed's shard
  // sizes (runtime/config/tp_plan.h).
  void ShardForTp() {
    for (ModelParam& p : params_) {
      const TpStyle style = StyleOf(s_.tp_plan, p.name);
      int dim = -1;
      if (style == TpStyle::kColumn || style == TpStyle::kColumnGather) dim = 0;
      if (style == TpStyle::kRow && p.shape.size() == 2) dim = 1;
      if (dim < 0) continue;
      const std::vector<int64_t> sizes = ShardSizes(p.shape[static_cast<size_t>(dim)], s_.tp_size,
                                                    p.name, s_.tp_plan.num_kv_heads);
      int64_t begin = 0;
      for (int r = 0; r < s_.tp_rank; ++r) begin += sizes[static_cast<size_t>(r)];
      p.slice_dim = dim;
      p.slice_begin = begin;
      p.slice_full = p.shape[static_cast<size_t>(dim)];
      p.shape[static_cast<size_t>(dim)] = sizes[static_cast<size_t>(s_.tp_rank)];
      p.tp_sharded = true;
      if (style == TpStyle::kColumnGather) head_widths_ = sizes;
    }
  }

  DenseDecoderShape s_;
  std::vector<int> layer_first_;  // first parameter of each layer, then model.norm's
  TpGroup tp_, sp_;
  std::vector<int64_t> head_widths_;  // AutoTP: lm_head's vocabulary rows per TP rank
};

}  // namespace

std::unique_ptr<Model> MakeDenseDecoder(const DenseDecoderShape& shape) {
  return std::make_unique<DenseDecoder>(shape);
}

}  // namespace ucp::runtime
