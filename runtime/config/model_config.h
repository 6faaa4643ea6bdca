// The Hugging Face style config.json of the model `ucp train` trains: the fixture TinyLM
// (specs/fixture-model.md) or a dense decoder (llama, qwen2, qwen3, mistral). HF configs are
// open-ended, so unknown keys are ignored; the keys that are used are validated. Torch-free.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace ucp::runtime {

struct ModelConfig {
  // "tinylm", dense "llama", "qwen2", "qwen3", "mistral", or mixture-of-experts (trained with
  // AutoEP, runtime/config/autoep_config.h) "mixtral", "qwen3_moe", "qwen2_moe",
  // "qwen3_5_moe_text", "deepseek_v2", "deepseek_v3".
  std::string model_type;
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0,
          max_position_embeddings = 0;
  // Dense decoders: head_dim defaults to hidden/heads, num_key_value_heads to the heads.
  int64_t num_attention_heads = 0, num_key_value_heads = 0, head_dim = 0;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (qwen2 has them; attention_bias in llama configs)
  bool qk_norm = false;         // per-head RMSNorm on q and k (qwen3, qwen3_moe)
  // DeepSeek multi-head latent attention (q_lora_rank 0: null, a plain q_proj).
  int64_t q_lora_rank = 0, kv_lora_rank = 0, qk_nope_head_dim = 0, qk_rope_head_dim = 0,
          v_head_dim = 0;
  std::string torch_dtype;  // informational
  nlohmann::json raw;

  bool is_tinylm() const { return model_type == "tinylm"; }
  bool is_moe() const;
  bool is_mla() const { return model_type == "deepseek_v2" || model_type == "deepseek_v3"; }
};

absl::StatusOr<ModelConfig> ParseModelConfig(const nlohmann::json& config);
// Reads and parses a config.json; errors name the file.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

}  // namespace ucp::runtime
