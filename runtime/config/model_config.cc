#include "runtime/config/model_config.h"

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "runtime/config/json_fields.h"

namespace ucp::runtime {
namespace {

constexpr char kWhat[] = "model config";
// No tensor of a trainable model comes near 2^40 elements; larger sizes are typos or overflow.
constexpr int64_t kMaxElements = int64_t{1} << 40;

absl::Status Invalid(absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(kWhat, ": ", message));
}

// A required positive integer.
absl::Status ReadSize(StrictObject& o, absl::string_view key, int64_t* out) {
  const JsonField field = o.Get(key);
  if (!field.present()) return Invalid(absl::StrCat("`", key, "` is required"));
  UCP_RETURN_IF_ERROR(ReadInt(kWhat, field, out));
  if (*out <= 0 || *out > kMaxElements) {
    return Invalid(absl::StrCat("`", key, "` must be in [1, 2^40], got ", *out));
  }
  return absl::OkStatus();
}

// a*b, checked against kMaxElements (the parameter tensors are [a, b]).
absl::Status CheckProduct(absl::string_view what, int64_t a, int64_t b) {
  int64_t product = 0;
  if (__builtin_mul_overflow(a, b, &product) || product > kMaxElements) {
    return Invalid(absl::StrCat(what, " would have ", a, " x ", b,
                                " elements, more than 2^40: the sizes are not plausible"));
  }
  return absl::OkStatus();
}

absl::Status ParseDense(StrictObject& o, ModelConfig& m) {
  UCP_RETURN_IF_ERROR(ReadSize(o, "num_attention_heads", &m.num_attention_heads));
  if (m.hidden_size % m.num_attention_heads != 0 && !o.Get("head_dim").present()) {
    return Invalid(absl::StrCat("`num_attention_heads` ", m.num_attention_heads,
                                " does not divide `hidden_size` ", m.hidden_size,
                                " (and no `head_dim` is given)"));
  }
  m.num_key_value_heads = m.num_attention_heads;
  m.head_dim = m.hidden_size / m.num_attention_heads;
  if (o.Get("num_key_value_heads").present()) {
    UCP_RETURN_IF_ERROR(ReadSize(o, "num_key_value_heads", &m.num_key_value_heads));
  }
  if (o.Get("head_dim").present()) UCP_RETURN_IF_ERROR(ReadSize(o, "head_dim", &m.head_dim));
  if (m.num_attention_heads % m.num_key_value_heads != 0) {
    return Invalid(absl::StrCat("`num_key_value_heads` ", m.num_key_value_heads,
                                " does not divide `num_attention_heads` ", m.num_attention_heads));
  }
  UCP_RETURN_IF_ERROR(CheckProduct("the attention heads", m.num_attention_heads, m.head_dim));
  UCP_RETURN_IF_ERROR(CheckProduct("q_proj", m.num_attention_heads * m.head_dim, m.hidden_size));
  UCP_RETURN_IF_ERROR(ReadDouble(kWhat, o.Get("rms_norm_eps"), &m.rms_norm_eps));
  UCP_RETURN_IF_ERROR(ReadDouble(kWhat, o.Get("rope_theta"), &m.rope_theta));
  if (!(m.rms_norm_eps > 0) || !(m.rope_theta > 0)) {
    return Invalid("`rms_norm_eps` and `rope_theta` must be positive");
  }
  m.attention_bias = m.model_type == "qwen2";  // Qwen2 has q/k/v biases without saying so
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, o.Get("attention_bias"), &m.attention_bias));
  m.qk_norm =
      m.model_type == "qwen3" || m.model_type == "qwen3_moe" || m.model_type == "qwen3_5_moe_text";
  std::string act = "silu";
  const JsonField act_field = o.Get("hidden_act");
  UCP_RETURN_IF_ERROR(ReadString(kWhat, act_field, &act));
  if (act != "silu") {
    return absl::UnimplementedError(
        absl::StrCat(kWhat, ": `hidden_act` \"", act, "\" (only \"silu\" is implemented)"));
  }
  if (const JsonField f = o.Get("rope_scaling"); f.present()) {
    return absl::UnimplementedError(absl::StrCat(kWhat, ": `rope_scaling` ", DescribeJson(*f.value),
                                                 " is not implemented (null only)"));
  }
  for (const char* key : {"mlp_bias", "attention_dropout"}) {
    const JsonField f = o.Get(key);
    if (f.present() && !(f.value->is_boolean() && !f.value->get<bool>()) &&
        !(f.value->is_number() && f.value->get<double>() == 0)) {
      return absl::UnimplementedError(
          absl::StrCat(kWhat, ": `", key, "` ", DescribeJson(*f.value), " is not implemented"));
    }
  }
  // sliding_window / use_sliding_window are not read: full causal attention is what ucp
  // computes, which equals sliding-window attention only for sequences within the window.
  return absl::OkStatus();
}

// DeepSeek's multi-head latent attention sizes.
absl::Status ParseMla(StrictObject& o, ModelConfig& m) {
  if (const JsonField f = o.Get("q_lora_rank"); f.present() && !f.value->is_null())
    UCP_RETURN_IF_ERROR(ReadSize(o, "q_lora_rank", &m.q_lora_rank));
  UCP_RETURN_IF_ERROR(ReadSize(o, "kv_lora_rank", &m.kv_lora_rank));
  UCP_RETURN_IF_ERROR(ReadSize(o, "qk_nope_head_dim", &m.qk_nope_head_dim));
  UCP_RETURN_IF_ERROR(ReadSize(o, "qk_rope_head_dim", &m.qk_rope_head_dim));
  UCP_RETURN_IF_ERROR(ReadSize(o, "v_head_dim", &m.v_head_dim));
  if (m.qk_rope_head_dim % 2 != 0) return Invalid("`qk_rope_head_dim` must be even (RoPE)");
  bool interleave = false;
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, o.Get("rope_interleave"), &interleave));
  if (interleave) {
    return absl::UnimplementedError(
        absl::StrCat(kWhat, ": `rope_interleave` true is not implemented (rotate-half only)"));
  }
  return CheckProduct("q_b_proj", m.num_attention_heads * (m.qk_nope_head_dim + m.qk_rope_head_dim),
                      std::max<int64_t>(m.q_lora_rank, m.hidden_size));
}

}  // namespace

bool ModelConfig::is_moe() const {
  return model_type == "mixtral" || model_type == "qwen3_moe" || model_type == "qwen2_moe" ||
         model_type == "qwen3_5_moe_text" || is_mla();
}

absl::StatusOr<ModelConfig> ParseModelConfig(const nlohmann::json& config) {
  if (!config.is_object()) {
    return Invalid(absl::StrCat("must be a JSON object, got ", DescribeJson(config)));
  }
  ModelConfig m;
  m.raw = config;
  StrictObject o(config, kWhat, "");
  const JsonField type = o.Get("model_type");
  if (!type.present()) return Invalid("`model_type` is required");
  UCP_RETURN_IF_ERROR(ReadString(kWhat, type, &m.model_type));
  const bool dense = m.model_type == "llama" || m.model_type == "qwen2" ||
                     m.model_type == "qwen3" || m.model_type == "mistral" || m.is_moe();
  if (!m.is_tinylm() && !dense) {
    return absl::UnimplementedError(absl::StrCat(
        kWhat, ": model_type \"", m.model_type,
        "\" is not supported (supported: tinylm, llama, qwen2, qwen3, mistral; with AutoEP "
        "mixtral, qwen3_moe, qwen2_moe, qwen3_5_moe_text, deepseek_v2, deepseek_v3)"));
  }
  UCP_RETURN_IF_ERROR(ReadSize(o, "vocab_size", &m.vocab_size));
  UCP_RETURN_IF_ERROR(ReadSize(o, "hidden_size", &m.hidden_size));
  UCP_RETURN_IF_ERROR(ReadSize(o, "intermediate_size", &m.intermediate_size));
  UCP_RETURN_IF_ERROR(ReadSize(o, "num_hidden_layers", &m.num_hidden_layers));
  UCP_RETURN_IF_ERROR(ReadSize(o, "max_position_embeddings", &m.max_position_embeddings));
  UCP_RETURN_IF_ERROR(CheckProduct("the embedding", m.vocab_size, m.hidden_size));
  UCP_RETURN_IF_ERROR(CheckProduct("an MLP weight", m.intermediate_size, m.hidden_size));
  UCP_RETURN_IF_ERROR(ReadString(kWhat, o.Get("torch_dtype"), &m.torch_dtype));
  // TinyLM ties its head to the embedding (fixture-model.md); HF's default is tied too, but
  // Llama-family configs normally say false explicitly.
  m.tie_word_embeddings = m.is_tinylm();
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, o.Get("tie_word_embeddings"), &m.tie_word_embeddings));
  if (dense) UCP_RETURN_IF_ERROR(ParseDense(o, m));
  if (m.is_mla()) UCP_RETURN_IF_ERROR(ParseMla(o, m));
  return m;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  UCP_ASSIGN_OR_RETURN(nlohmann::json config, ReadJsonFile(path, "model config"));
  absl::StatusOr<ModelConfig> parsed = ParseModelConfig(config);
  if (!parsed.ok()) return WithContext(parsed.status(), path);
  return parsed;
}

}  // namespace ucp::runtime
