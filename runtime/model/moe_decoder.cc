#include "runtime/model/moe_decoder.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/normal.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/split_with_sizes.h>
#include <ATen/ops/zeros.h>

#include <string>
#include <vector>

#include "runtime/model/decoder_blocks.h"
#include "runtime/model/seq_parallel.h"

namespace ucp::runtime {
namespace {

class MoeDecoder : public MoeModel {
 public:
  explicit MoeDecoder(const MoeDecoderShape& s) : s_(s) {
    const int64_t H = s.hidden;
    AddParam("model.embed_tokens.weight", {s.vocab, H});
    for (int64_t l = 0; l < s.layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      layer_first_.push_back(static_cast<int>(params_.size()));
      if (s.mla) {
        const int64_t qk = s.qk_nope_head_dim + s.qk_rope_head_dim;
        if (s.q_lora_rank > 0) {
          AddParam(p + "self_attn.q_a_proj.weight", {s.q_lora_rank, H});
          AddParam(p + "self_attn.q_a_layernorm.weight", {s.q_lora_rank});
          AddParam(p + "self_attn.q_b_proj.weight", {s.heads * qk, s.q_lora_rank});
        } else {
          AddParam(p + "self_attn.q_proj.weight", {s.heads * qk, H});
        }
        AddParam(p + "self_attn.kv_a_proj_with_mqa.weight",
                 {s.kv_lora_rank + s.qk_rope_head_dim, H});
        AddParam(p + "self_attn.kv_a_layernorm.weight", {s.kv_lora_rank});
        AddParam(p + "self_attn.kv_b_proj.weight",
                 {s.heads * (s.qk_nope_head_dim + s.v_head_dim), s.kv_lora_rank});
        AddParam(p + "self_attn.o_proj.weight", {H, s.heads * s.v_head_dim});
      } else {
        AddParam(p + "self_attn.q_proj.weight", {s.heads * s.head_dim, H});
        AddParam(p + "self_attn.k_proj.weight", {s.kv_heads * s.head_dim, H});
        AddParam(p + "self_attn.v_proj.weight", {s.kv_heads * s.head_dim, H});
        AddParam(p + "self_attn.o_proj.weight", {H, s.heads * s.head_dim});
        if (s.qk_norm) {
          AddParam(p + "self_attn.q_norm.weight", {s.head_dim});
          AddParam(p + "self_attn.k_norm.weight", {s.head_dim});
        }
      }
      const MoeSpec& m = s.moe[static_cast<size_t>(l)];
      if (m.num_experts > 0) {
        const int64_t E = m.num_experts, el = E / s.ep_size, I = m.intermediate;
        AddParam(p + "mlp.router.gate.weight", {E, H});
        for (const auto& [w, rows, cols] :
             {std::tuple{"w1", I, H}, std::tuple{"w2", H, I}, std::tuple{"w3", I, H}}) {
          const int i = AddParam(p + "mlp.experts." + w, {el, rows, cols});
          params_[i].num_experts = E;
          params_[i].slice_dim = 0;
          params_[i].slice_begin = s.ep_rank * el;
          params_[i].slice_full = E;
        }
        if (s.shared_intermediate > 0) {
          const int64_t Is = s.shared_intermediate;
          AddParam(p + "mlp.shared_experts.gate_proj.weight", {Is, H});
          AddParam(p + "mlp.shared_experts.up_proj.weight", {Is, H});
          AddParam(p + "mlp.shared_experts.down_proj.weight", {H, Is});
          if (s.shared_gate) AddParam(p + "mlp.shared_experts_gate.weight", {1, H});
        }
      } else {
        AddParam(p + "mlp.gate_proj.weight", {s.intermediate, H});
        AddParam(p + "mlp.up_proj.weight", {s.intermediate, H});
        AddParam(p + "mlp.down_proj.weight", {H, s.intermediate});
      }
      AddParam(p + "input_layernorm.weight", {H});
      AddParam(p + "post_attention_layernorm.weight", {H});
    }
    layer_first_.push_back(static_cast<int>(params_.size()));
    AddParam("model.norm.weight", {H});
    if (!s.tie_word_embeddings) AddParam("lm_head.weight", {s.vocab, H});
    for (const ModelParam& p : params_) {
      state_dict_order_.push_back(p.name);
      // AutoEP registers the router a second time under the Hugging Face child name.
      const std::string router = ".mlp.router.gate.weight";
      if (s.router_alias && p.name.size() > router.size() &&
          p.name.compare(p.name.size() - router.size(), router.size(), router) == 0) {
        const std::string alias =
            p.name.substr(0, p.name.size() - router.size()) + ".mlp.gate.gate.weight";
        state_dict_order_.push_back(alias);
        tied_.push_back({alias, p.name, /*shared_param=*/false});
      }
    }
    if (s.tie_word_embeddings) {
      state_dict_order_.push_back("lm_head.weight");
      tied_.push_back({"lm_head.weight", "model.embed_tokens.weight"});
    }
    // AutoEP's module state_dict is a filtered copy: no _metadata, so no module_names.
  }

  std::string type() const override { return s_.model_type; }
  int num_units() const override { return static_cast<int>(s_.layers) + 2; }
  void SetExpertComm(Comm* ep) override { ep_ = ep; }
  void SetSpGroup(const TpGroup& sp) override { sp_ = sp; }

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
      at::Tensor logits = at::linear(Norm(in, params_[p[0]].value), params_[p[1]].value);
      return at::cross_entropy_loss(logits.to(at::kFloat).reshape({-1, s_.vocab}),
                                    targets.reshape({-1}));
    }
    const int64_t l = unit - 1;
    const std::string p = "model.layers." + std::to_string(l) + ".";
    at::Tensor x = Norm(in, V(p + "input_layernorm.weight"));
    at::Tensor h = in + (s_.mla ? Mla(p, x) : Gqa(p, x));
    x = Norm(h, V(p + "post_attention_layernorm.weight"));
    const MoeSpec& m = s_.moe[static_cast<size_t>(l)];
    if (m.num_experts == 0)
      return h + SwiGlu(x, V(p + "mlp.gate_proj.weight"), V(p + "mlp.up_proj.weight"),
                        V(p + "mlp.down_proj.weight"));
    const at::Tensor flat = x.reshape({-1, s_.hidden});
    MoeWeights w{V(p + "mlp.router.gate.weight"), V(p + "mlp.experts.w1"), V(p + "mlp.experts.w2"),
                 V(p + "mlp.experts.w3")};
    at::Tensor out = MoeForward(m, w, flat, ep_);
    if (s_.shared_intermediate > 0) {
      at::Tensor shared = SwiGlu(flat, V(p + "mlp.shared_experts.gate_proj.weight"),
                                 V(p + "mlp.shared_experts.up_proj.weight"),
                                 V(p + "mlp.shared_experts.down_proj.weight"));
      if (s_.shared_gate)
        shared = shared * at::sigmoid(at::linear(flat, V(p + "mlp.shared_experts_gate.weight")));
      out = out + shared;
    }
    return h + out.view(x.sizes());
  }

  at::Tensor InitialValue(int param, uint64_t seed) const override {
    const ModelParam& p = params_[param];
    if (p.shape.size() == 1) {
      const bool norm = p.name.find("norm") != std::string::npos;
      return norm ? at::ones(p.shape) : at::zeros(p.shape);
    }
    // Experts: the global tensor, then this rank's rows, so every autoep_size starts alike.
    at::Generator g = at::detail::createCPUGenerator(seed * 7919 + static_cast<uint64_t>(param));
    at::Tensor t = at::normal(0.0, 0.02, p.global_shape(), g);  // HF initializer_range
    return p.Slice(t).clone();
  }

 private:
  const at::Tensor& V(const std::string& name) const { return params_[index_.at(name)].value; }
  at::Tensor Norm(const at::Tensor& x, const at::Tensor& w) const {
    return RmsNorm(x, w, s_.rms_norm_eps);
  }

  at::Tensor Gqa(const std::string& p, const at::Tensor& x) const {
    GqaWeights w;
    w.q = V(p + "self_attn.q_proj.weight");
    w.k = V(p + "self_attn.k_proj.weight");
    w.v = V(p + "self_attn.v_proj.weight");
    w.o = V(p + "self_attn.o_proj.weight");
    if (s_.qk_norm) {
      w.q_norm = V(p + "self_attn.q_norm.weight");
      w.k_norm = V(p + "self_attn.k_norm.weight");
    }
    w.sp = &sp_;
    return GqaAttention(x, w, s_.head_dim, s_.rms_norm_eps, s_.rope_theta);
  }

  // DeepSeek's multi-head latent attention (Hugging Face DeepseekV3Attention, rope_interleave
  // false): q from a low-rank path, k/v from one compressed latent, one rotary key shared by
  // every head.
  at::Tensor Mla(const std::string& p, const at::Tensor& x) const {
    const int64_t B = x.size(0), T = x.size(1), nh = s_.heads;
    const int64_t nope = s_.qk_nope_head_dim, rope = s_.qk_rope_head_dim, vd = s_.v_head_dim;
    at::Tensor q = s_.q_lora_rank > 0
                       ? at::linear(Norm(at::linear(x, V(p + "self_attn.q_a_proj.weight")),
                                         V(p + "self_attn.q_a_layernorm.weight")),
                                    V(p + "self_attn.q_b_proj.weight"))
                       : at::linear(x, V(p + "self_attn.q_proj.weight"));
    q = q.view({B, T, nh, nope + rope}).transpose(1, 2);
    std::vector<at::Tensor> qs = at::split_with_sizes(q, {nope, rope}, -1);
    at::Tensor ckv = at::linear(x, V(p + "self_attn.kv_a_proj_with_mqa.weight"));
    std::vector<at::Tensor> kvs = at::split_with_sizes(ckv, {s_.kv_lora_rank, rope}, -1);
    at::Tensor kv = at::linear(Norm(kvs[0], V(p + "self_attn.kv_a_layernorm.weight")),
                               V(p + "self_attn.kv_b_proj.weight"))
                        .view({B, T, nh, nope + vd})
                        .transpose(1, 2);
    std::vector<at::Tensor> kv_parts = at::split_with_sizes(kv, {nope, vd}, -1);
    if (sp_.active()) {
      // Ulysses (§3.2): each SP rank's positions of every head exchanged for all positions of
      // nh/P heads; the shared rotary key goes with each head, RoPE after (global positions).
      auto to_heads = [&](const at::Tensor& t) {  // [B, nh, T/P, d] -> [B, nh/P, T, d]
        return SeqToHeads(sp_, t.transpose(1, 2).contiguous()).transpose(1, 2);
      };
      at::Tensor q_nope = to_heads(qs[0]), q_rot = to_heads(qs[1]);
      at::Tensor k_nope = to_heads(kv_parts[0]), value = to_heads(kv_parts[1]);
      at::Tensor k_rot =
          to_heads(kvs[1].view({B, T, 1, rope}).transpose(1, 2).expand({B, nh, T, rope}));
      at::Tensor query = at::cat({q_nope, Rope(q_rot, s_.rope_theta)}, -1);
      at::Tensor key = at::cat({k_nope, Rope(k_rot, s_.rope_theta)}, -1);
      at::Tensor att = CausalAttention(query, key, value);  // [B, T_full, nh/P * vd]
      att = HeadsToSeq(sp_, att.view({B, att.size(1), -1, vd})).reshape({B, T, -1});
      return at::linear(att, V(p + "self_attn.o_proj.weight"));
    }
    at::Tensor k_rot = Rope(kvs[1].view({B, 1, T, rope}), s_.rope_theta).expand({B, nh, T, rope});
    at::Tensor query = at::cat({qs[0], Rope(qs[1], s_.rope_theta)}, -1);
    at::Tensor key = at::cat({kv_parts[0], k_rot}, -1);
    return at::linear(CausalAttention(query, key, kv_parts[1]), V(p + "self_attn.o_proj.weight"));
  }

  MoeDecoderShape s_;
  std::vector<int> layer_first_;
  Comm* ep_ = nullptr;
  TpGroup sp_;  // AutoSP
};

}  // namespace

std::unique_ptr<MoeModel> MakeMoeDecoder(const MoeDecoderShape& shape) {
  return std::make_unique<MoeDecoder>(shape);
}

}  // namespace ucp::runtime
