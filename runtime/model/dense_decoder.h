// DenseDecoder: the Llama / Qwen2 / Qwen3 / Mistral decoder of a Hugging Face config.json, with
// Hugging Face's parameter names and registration order (so that its safetensors and DeepSpeed
// checkpoints of it load by name): RMSNorm (fp32 inside), rotate-half RoPE, grouped-query causal
// attention in fp32 (Qwen3: per-head q_norm / k_norm before RoPE), SwiGLU MLP, optional tied
// lm_head; loss = mean cross-entropy of fp32 logits against already aligned labels. The forward is
// the AutoTP harness model's (specs/fixture-model.md, AutoEP "Common structure").
#pragma once

#include <memory>
#include <string>

#include "runtime/config/tp_plan.h"
#include "runtime/model/model.h"

namespace ucp::runtime {

struct DenseDecoderShape {
  std::string model_type = "llama";  // llama, mistral, qwen2, qwen3
  int64_t vocab = 0, hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0,
          head_dim = 0;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // llama/mistral: q, k, v, o biases; qwen2 always has q, k, v
  // AutoTP (tp_size > 1): this rank's column / row slices by `tp_plan`; the collectives run over
  // the group given to Model::SetTpGroup.
  int tp_size = 1, tp_rank = 0;
  TpPlan tp_plan;
};

std::unique_ptr<Model> MakeDenseDecoder(const DenseDecoderShape& shape);

}  // namespace ucp::runtime
