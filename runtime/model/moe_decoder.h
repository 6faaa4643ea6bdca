// MoeDecoder: the Hugging Face mixture-of-experts decoders AutoEP trains (specs/fixture-model.md
// "AutoEP cases"; deepseek-runtime.md §1.2-1.3) with DeepSpeed's AutoEP parameter names: Mixtral,
// Qwen3-MoE / Qwen2-MoE (grouped-query attention, Qwen: q/k norm) and DeepSeek-V2/V3 (multi-head
// latent attention, dense first layers, shared experts). Each MoE block is an AutoEPMoELayer:
// mlp.router.gate.weight [E, H], mlp.experts.w1 / w3 [E_l, I, H] and w2 [E_l, H, I] holding this
// rank's experts only, mlp.shared_experts.* (+ mlp.shared_experts_gate.weight); Mixtral and Qwen
// also keep the router under its Hugging Face name mlp.gate.gate.weight (a state_dict alias).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/dist/comm.h"
#include "runtime/model/model.h"
#include "runtime/moe/moe_layer.h"

namespace ucp::runtime {

struct MoeDecoderShape {
  std::string model_type;  // mixtral, qwen3_moe, qwen2_moe, qwen3_5_moe_text, deepseek_v2/_v3
  int64_t vocab = 0, hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0,
          head_dim = 0;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool qk_norm = false;  // Qwen3: per-head q_norm / k_norm
  // Multi-head latent attention (DeepSeek); q_lora_rank 0: a plain q_proj.
  bool mla = false;
  int64_t q_lora_rank = 0, kv_lora_rank = 0, qk_nope_head_dim = 0, qk_rope_head_dim = 0,
          v_head_dim = 0;
  // Per layer: an AutoEP MoE block (moe[l].num_experts > 0) or a dense SwiGLU MLP.
  std::vector<MoeSpec> moe;
  int64_t shared_intermediate = 0;  // shared experts' width (0: none)
  bool shared_gate = false;         // Qwen's sigmoid gate on the shared experts
  bool router_alias = false;        // mlp.gate.gate.weight in the state_dict
  int ep_size = 1, ep_rank = 0;     // this rank's experts: [ep_rank * E / ep_size, ...)
};

class MoeModel : public Model {
 public:
  // The expert-parallel group the MoE blocks exchange tokens over (nullptr: all experts local).
  virtual void SetExpertComm(Comm* ep) = 0;
};

std::unique_ptr<MoeModel> MakeMoeDecoder(const MoeDecoderShape& shape);

}  // namespace ucp::runtime
