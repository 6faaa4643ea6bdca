#include "runtime/config/tp_plan.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ucp::runtime {
namespace {

absl::StatusOr<TpStyle> ParseStyle(const std::string& key, const std::string& style) {
  const std::string s = absl::AsciiStrToLower(style);
  if (s == "colwise") return TpStyle::kColumn;
  if (s == "colwise_rep" || s == "colwise_gather_output") return TpStyle::kColumnGather;
  if (s == "rowwise") return TpStyle::kRow;
  if (s == "replicated_with_grad_allreduce") return TpStyle::kGradAllreduce;
  return absl::InvalidArgumentError(absl::StrCat(
      "model config: base_model_tp_plan[\"", key, "\"] = \"", style,
      "\": DeepSpeed's AutoTP rejects this tp_plan style (colwise, colwise_rep, "
      "colwise_gather_output, rowwise and replicated_with_grad_allreduce are supported)"));
}

// HF wildcard match: pattern segments separated by '.', '*' matches one segment; the pattern
// matches a suffix of the module path at a segment boundary (HF prefixes "model." itself).
bool ModuleMatches(const std::string& pattern, const std::string& module) {
  const std::vector<std::string> p = absl::StrSplit(pattern, '.');
  const std::vector<std::string> m = absl::StrSplit(module, '.');
  if (p.size() > m.size()) return false;
  const size_t off = m.size() - p.size();
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] != "*" && p[i] != m[off + i]) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<TpPlan> TpPlanOf(const nlohmann::json& c) {
  TpPlan plan;
  const std::string type = c.value("model_type", std::string());
  if (c.contains("base_model_tp_plan") && c["base_model_tp_plan"].is_object()) {
    for (const auto& [k, v] : c["base_model_tp_plan"].items()) {
      if (!v.is_string())
        return absl::InvalidArgumentError(
            absl::StrCat("model config: base_model_tp_plan[\"", k, "\"] is not a string"));
      absl::StatusOr<TpStyle> s = ParseStyle(k, v.get<std::string>());
      if (!s.ok()) return s.status();
      plan.rules.emplace_back(k, *s);
    }
  } else if (type == "llama" || type == "mistral" || type == "qwen2" || type == "qwen3") {
    for (const char* m : {"q_proj", "k_proj", "v_proj"})
      plan.rules.emplace_back(absl::StrCat("layers.*.self_attn.", m), TpStyle::kColumn);
    plan.rules.emplace_back("layers.*.self_attn.o_proj", TpStyle::kRow);
    if (type == "qwen3") {
      plan.rules.emplace_back("layers.*.self_attn.q_norm", TpStyle::kGradAllreduce);
      plan.rules.emplace_back("layers.*.self_attn.k_norm", TpStyle::kGradAllreduce);
    }
    for (const char* m : {"gate_proj", "up_proj"})
      plan.rules.emplace_back(absl::StrCat("layers.*.mlp.", m), TpStyle::kColumn);
    plan.rules.emplace_back("layers.*.mlp.down_proj", TpStyle::kRow);
  } else {
    return absl::UnimplementedError(absl::StrCat(
        "model config: no base_model_tp_plan and no built-in tp_plan for model_type \"", type,
        "\" (AutoTP: llama, mistral, qwen2, qwen3)"));
  }
  // The *ForCausalLM class plan: an untied lm_head is vocabulary-split, its output gathered.
  if (!c.value("tie_word_embeddings", false))
    plan.rules.emplace_back("lm_head", TpStyle::kColumnGather);
  for (const char* key : {"num_key_value_heads", "num_attention_heads"}) {
    if (c.contains(key) && c[key].is_number_integer()) {
      plan.num_kv_heads = c[key].get<int64_t>();
      break;
    }
  }
  return plan;
}

TpStyle StyleOf(const TpPlan& plan, const std::string& name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) return TpStyle::kReplicated;
  const std::string module = name.substr(0, dot), leaf = name.substr(dot + 1);
  for (const auto& [pattern, style] : plan.rules) {
    if (!ModuleMatches(pattern, module)) continue;
    if (leaf == "bias" && style == TpStyle::kRow) return TpStyle::kReplicated;
    return style;
  }
  return TpStyle::kReplicated;
}

std::vector<int64_t> ShardSizes(int64_t total, int tp, const std::string& name,
                                int64_t num_kv_heads) {
  std::vector<int64_t> out(static_cast<size_t>(tp), 0);
  bool head_aware = num_kv_heads > 0 && total % num_kv_heads == 0 &&
                    !absl::StrContains(name, "mlp") && !absl::StrContains(name, "lm_head") &&
                    !absl::StrContains(name, "embed_out");
  for (const char* m : {"gate_proj", "up_proj", "down_proj", "w1", "w2", "w3"})
    head_aware = head_aware && !absl::StrContains(name, m);
  if (head_aware) {
    for (int r = 0; r < tp; ++r) {
      const int64_t groups = num_kv_heads / tp + (r < num_kv_heads % tp ? 1 : 0);
      out[static_cast<size_t>(r)] = total * groups / num_kv_heads;
    }
    return out;
  }
  for (int r = 0; r < tp; ++r) out[static_cast<size_t>(r)] = total / tp + (r < total % tp ? 1 : 0);
  return out;
}

}  // namespace ucp::runtime
