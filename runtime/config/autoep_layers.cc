// ResolveAutoEpLayers (autoep_config.h): DeepSpeed's AutoEP presets (module_inject/
// auto_ep_presets/*.py), its ep_parser (auto_ep.py) and validate_autoep_post_detection
// (auto_ep_config.py), applied to a Hugging Face config.json instead of a live nn.Module. The
// module tree DeepSpeed walks is implied by model_type (Transformers 5.x, specs §1.2): which
// decoder layers own a sparse block, and which shared-expert children that block has.
#include <algorithm>
#include <cmath>
#include <regex>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "runtime/config/autoep_config.h"
#include "runtime/config/autoep_internal.h"
#include "runtime/config/json_fields.h"

namespace ucp::runtime {
namespace {

using internal_autoep::Divisors;
using internal_autoep::Invalid;
using internal_autoep::PyIntList;
using json = nlohmann::json;

constexpr char kHf[] = "config.json";
constexpr char kBlockPattern[] = R"(model\.layers\.\d+\.mlp)";
constexpr int64_t kMaxLayers = 1 << 16;  // bounds the per-layer loop over a hostile config.json

enum class Adapter { kDefault, kDeepseekV2, kDeepseekV3 };

// One preset of DeepSpeed's registry, with the AutoEP overrides applied.
struct Preset {
  std::string name;
  std::string family;  // the HF model_type whose module tree it describes; "" = generic
  std::string layer_pattern = kBlockPattern;
  std::string num_experts_attr, top_k_attr = "num_experts_per_tok";
  std::string score_func = "softmax";
  bool route_norm = true;
  Adapter adapter = Adapter::kDefault;
  bool has_shared = false;
  std::string shared_pattern, shared_gate_pattern;
};

std::optional<Preset> BuiltinPreset(absl::string_view name) {
  Preset p;
  p.name = std::string(name);
  if (name == "mixtral") {
    p.family = "mixtral";
    p.num_experts_attr = "num_local_experts";
  } else if (name == "qwen3_moe" || name == "qwen3_5_moe") {
    p.family = name == "qwen3_moe" ? "qwen3_moe" : "qwen3_5_moe_text";
    p.num_experts_attr = "num_experts";
    p.has_shared = true;
    p.shared_pattern = "shared_expert";
    p.shared_gate_pattern = "shared_expert_gate";
  } else if (name == "deepseek_v2" || name == "deepseek_v3") {
    p.family = std::string(name);
    p.num_experts_attr = "n_routed_experts";
    p.score_func = name == "deepseek_v3" ? "sigmoid" : "softmax";
    p.route_norm = false;
    p.adapter = name == "deepseek_v3" ? Adapter::kDeepseekV3 : Adapter::kDeepseekV2;
    p.has_shared = true;
    p.shared_pattern = "shared_experts";
  } else {
    return std::nullopt;
  }
  return p;
}

// preset_name_for_hf_model_type.
std::string PresetForModelType(absl::string_view model_type) {
  if (model_type == "qwen2_moe") return "qwen3_moe";
  if (model_type == "qwen3_5_moe_text") return "qwen3_5_moe";
  for (const char* name : {"mixtral", "qwen3_moe", "deepseek_v2", "deepseek_v3"}) {
    if (model_type == name) return name;
  }
  return "";
}

// apply_config_overrides / _build_custom_preset (the fields that matter without a module).
void ApplyOverrides(const AutoEpConfig& c, Preset& p) {
  if (c.moe_layer_pattern) p.layer_pattern = *c.moe_layer_pattern;
  if (c.num_experts_attr) p.num_experts_attr = *c.num_experts_attr;
  if (c.top_k_attr) p.top_k_attr = *c.top_k_attr;
  if (c.has_shared_experts) p.has_shared = *c.has_shared_experts;
  if (c.shared_experts_pattern) p.shared_pattern = *c.shared_experts_pattern;
  if (c.shared_experts_gate_pattern) p.shared_gate_pattern = *c.shared_experts_gate_pattern;
}

// ucp's runtime reads the Transformers 5.x fused layout only: router `gate`, experts `experts`
// with `gate_up_proj` [E, 2I, H] and `down_proj` [E, H, I].
absl::Status RequireFusedLayout(const AutoEpConfig& c) {
  for (auto [key, value, expected] : {std::tuple{"router_pattern", &c.router_pattern, "gate"},
                                      std::tuple{"expert_pattern", &c.expert_pattern, "experts"},
                                      std::tuple{"expert_w1", &c.expert_w1, "gate_up_proj"},
                                      std::tuple{"expert_w2", &c.expert_w2, "down_proj"}}) {
    if (value->has_value() && **value != expected) {
      return absl::UnimplementedError(absl::StrCat(
          "ds_config: `expert_parallel.", key, "` '", **value, "' (ucp reads the Hugging Face ",
          "fused expert layout only: router `gate`, experts `experts` with `gate_up_proj` and ",
          "`down_proj`)"));
    }
  }
  if (c.expert_w3) {
    return absl::UnimplementedError(absl::StrCat(
        "ds_config: `expert_parallel.expert_w3` '", *c.expert_w3,
        "' (ucp reads the fused gate+up layout only; leave expert_w3 absent or null)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Preset> SelectPreset(const AutoEpConfig& c, const std::string& model_type) {
  std::optional<Preset> preset;
  if (c.preset_model) {
    preset = BuiltinPreset(*c.preset_model);
    if (!preset) return Invalid(absl::StrCat("Unknown preset_model '", *c.preset_model, "'"));
    if (const std::string known = PresetForModelType(model_type); !known.empty()) {
      preset->family = model_type;  // the module tree is the model's, whatever the preset
    }
  } else if (const std::string name = PresetForModelType(model_type); !name.empty()) {
    preset = BuiltinPreset(name);
    preset->family = model_type;
  }
  if (model_type == "qwen3_5_moe" && (!preset || preset->name == "qwen3_5_moe")) {
    return Invalid(
        "AutoEP preset 'qwen3_5_moe' does not support model_type='qwen3_5_moe'. AutoEP supports "
        "the Qwen3.5 text backbone preset path; pass the text-backbone model/config with "
        "model_type='qwen3_5_moe_text'. Supported HF model_type value(s): 'qwen3_5_moe_text'.");
  }
  if (!preset && c.moe_layer_pattern) {
    preset = Preset{};
    preset->name = "custom";
    preset->num_experts_attr = "num_local_experts";
  }
  if (!preset) {
    return Invalid(absl::StrCat(
        "AutoEP cannot choose a preset for model_type='", model_type,
        "': set `expert_parallel.preset_model` (mixtral, qwen3_moe, qwen3_5_moe, deepseek_v2, "
        "deepseek_v3) or `expert_parallel.moe_layer_pattern`"));
  }
  ApplyOverrides(c, *preset);
  return *preset;
}

// A config.json attribute; null when absent or JSON null (HF's "not set").
const json* Attr(const json& hf, absl::string_view key) {
  auto it = hf.find(std::string(key));
  return it == hf.end() || it->is_null() ? nullptr : &*it;
}

absl::StatusOr<std::optional<int64_t>> IntAttr(const json& hf, absl::string_view key) {
  const json* v = Attr(hf, key);
  if (v == nullptr) return std::optional<int64_t>();
  int64_t out = 0;
  UCP_RETURN_IF_ERROR(ReadInt(kHf, JsonField{v, std::string(key)}, &out));
  return std::optional<int64_t>(out);
}

absl::StatusOr<int64_t> PositiveAttr(const json& hf, absl::string_view key, int64_t fallback) {
  UCP_ASSIGN_OR_RETURN(std::optional<int64_t> v, IntAttr(hf, key));
  const int64_t value = v.value_or(fallback);
  if (value < 1 || value > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kHf, ": `", key, "` must be a positive integer, got ", value));
  }
  return value;
}

// Whether decoder layer i owns a sparse block in the HF module tree of `family`.
absl::StatusOr<bool> IsSparseLayer(const json& hf, const std::string& family, int i) {
  if (family == "qwen3_moe" || family == "qwen2_moe" || family == "qwen3_5_moe_text") {
    if (const json* only = Attr(hf, "mlp_only_layers"); only != nullptr) {
      if (!only->is_array()) {
        return absl::InvalidArgumentError(absl::StrCat(
            kHf, ": `mlp_only_layers` must be a list of integers, got ", DescribeJson(*only)));
      }
      for (const json& l : *only) {
        if (l.is_number_integer() && l.get<int64_t>() == i) return false;
      }
    }
    UCP_ASSIGN_OR_RETURN(std::optional<int64_t> experts, IntAttr(hf, "num_experts"));
    UCP_ASSIGN_OR_RETURN(int64_t step, PositiveAttr(hf, "decoder_sparse_step", 1));
    return experts.value_or(0) > 0 && (i + 1) % step == 0;
  }
  if (family == "deepseek_v2" || family == "deepseek_v3") {
    UCP_ASSIGN_OR_RETURN(std::optional<int64_t> first, IntAttr(hf, "first_k_dense_replace"));
    UCP_ASSIGN_OR_RETURN(int64_t freq, PositiveAttr(hf, "moe_layer_freq", 1));
    return i >= first.value_or(0) && i % freq == 0;
  }
  return true;  // mixtral, and a custom pattern over a generic decoder
}

// The block's shared-expert children in the HF module tree, matched against the preset the
// way DeepSpeed's getattr(module, pattern) does.
absl::Status ResolveShared(const json& hf, const Preset& p, MoeLayerSettings& s) {
  std::string child, gate_child;
  int64_t width = 0;
  if (p.family == "qwen2_moe" || p.family == "qwen3_5_moe_text") {
    child = "shared_expert";
    gate_child = "shared_expert_gate";
    UCP_ASSIGN_OR_RETURN(width, PositiveAttr(hf, "shared_expert_intermediate_size", 0));
  } else if (p.family == "deepseek_v2" || p.family == "deepseek_v3") {
    UCP_ASSIGN_OR_RETURN(std::optional<int64_t> n, IntAttr(hf, "n_shared_experts"));
    if (n.value_or(0) > 0) {
      child = "shared_experts";
      width = s.intermediate * *n;
    }
  } else if (p.family.empty() && p.has_shared && !p.shared_pattern.empty()) {
    child = p.shared_pattern;  // custom: the block is what the config says it is
    gate_child = p.shared_gate_pattern;
    UCP_ASSIGN_OR_RETURN(width, PositiveAttr(hf, "shared_expert_intermediate_size", 0));
  }
  if (!p.has_shared || child.empty() || p.shared_pattern != child) return absl::OkStatus();
  s.shared_experts = true;
  s.shared_prefix = child;
  s.shared_experts_gate = !gate_child.empty() && p.shared_gate_pattern == gate_child;
  s.shared_intermediate = width;
  return absl::OkStatus();
}

absl::StatusOr<double> RouteScale(const AutoEpConfig& c, const json& hf) {
  if (c.routed_scaling_factor) return *c.routed_scaling_factor;
  if (const json* v = Attr(hf, "routed_scaling_factor"); v != nullptr) {
    if (!v->is_number() || !std::isfinite(v->get<double>())) {
      return absl::InvalidArgumentError(absl::StrCat(
          kHf, ": `routed_scaling_factor` must be a finite number, got ", DescribeJson(*v)));
    }
    return v->get<double>();
  }
  return c.route_scale;
}

bool RouteNorm(const AutoEpConfig& c, const Preset& p, const json& hf) {
  if (c.route_norm) return *c.route_norm;
  if (p.adapter == Adapter::kDeepseekV2) return p.route_norm;  // norm_topk_prob ignored
  if (const json* v = Attr(hf, "norm_topk_prob"); v != nullptr) {
    if (v->is_boolean()) return v->get<bool>();
    if (v->is_number()) return v->get<double>() != 0.0;
  }
  return p.route_norm;
}

// fill_autoep_config_from_hf copies n_group/topk_group for any model that has them [quirk];
// the adapters then only choose the group score.
absl::Status ResolveGroups(const AutoEpConfig& c, const Preset& p, const json& hf,
                           MoeLayerSettings& s) {
  UCP_ASSIGN_OR_RETURN(std::optional<int64_t> n_group, IntAttr(hf, "n_group"));
  UCP_ASSIGN_OR_RETURN(std::optional<int64_t> topk_group, IntAttr(hf, "topk_group"));
  const std::optional<int64_t> groups =
      c.num_expert_groups ? std::optional<int64_t>(*c.num_expert_groups) : n_group;
  const std::optional<int64_t> limited =
      c.num_limited_groups ? std::optional<int64_t>(*c.num_limited_groups) : topk_group;
  const json* method = Attr(hf, "topk_method");
  const bool greedy = p.adapter == Adapter::kDeepseekV2 && method != nullptr &&
                      *method == json("group_limited_greedy");
  s.group_score = greedy ? "max" : "top2_sum";
  const std::string& m = s.module_path;
  if (limited && !groups) {
    return Invalid(
        absl::StrCat("num_limited_groups requires num_expert_groups to be set in layer '", m, "'"));
  }
  if (!groups) return absl::OkStatus();
  if (*groups < 1) {
    return Invalid(
        absl::StrCat("num_expert_groups must be >= 1 in layer '", m, "', got ", *groups));
  }
  if (s.num_experts % *groups != 0) {
    return Invalid(absl::StrCat("num_expert_groups (", *groups, ") must divide num_experts (",
                                s.num_experts, ") in layer '", m, "'"));
  }
  if (!limited) {
    return Invalid(absl::StrCat(
        "num_limited_groups must be set when num_expert_groups is set in layer '", m, "'"));
  }
  if (*limited < 1 || *limited > *groups) {
    return Invalid(absl::StrCat("num_limited_groups (", *limited,
                                ") must be >= 1 and <= num_expert_groups (", *groups,
                                ") in layer '", m, "'"));
  }
  if (s.group_score == "top2_sum" && s.num_experts / *groups < 2) {
    return Invalid(absl::StrCat("experts_per_group (", s.num_experts / *groups,
                                ") must be >= 2 for top2_sum group scoring in layer '", m, "'"));
  }
  s.num_expert_groups = static_cast<int>(*groups);
  s.num_limited_groups = static_cast<int>(*limited);
  return absl::OkStatus();
}

// E and K (ep_parser), then the ep_size checks of validate_autoep_post_detection.
absl::Status ResolveCounts(const AutoEpConfig& c, const Preset& p, const json& hf,
                           MoeLayerSettings& s) {
  const std::string& m = s.module_path;
  UCP_ASSIGN_OR_RETURN(std::optional<int64_t> e, IntAttr(hf, p.num_experts_attr));
  if (!e) {
    return Invalid(absl::StrCat("Could not determine num_experts for layer '", m,
                                "'. Set model.config.", p.num_experts_attr, " or use a preset."));
  }
  UCP_ASSIGN_OR_RETURN(s.num_experts, PositiveAttr(hf, p.num_experts_attr, 0));
  if (c.top_k) {
    s.top_k = *c.top_k;
  } else {
    UCP_ASSIGN_OR_RETURN(std::optional<int64_t> k, IntAttr(hf, p.top_k_attr));
    if (!k) {
      return Invalid(absl::StrCat("Could not determine top_k for layer '", m,
                                  "'. Set model.config.", p.top_k_attr, " or config top_k."));
    }
    UCP_ASSIGN_OR_RETURN(s.top_k, PositiveAttr(hf, p.top_k_attr, 0));
  }
  if (s.top_k > s.num_experts) {
    return Invalid(absl::StrCat("top_k=", s.top_k, " exceeds num_experts=", s.num_experts,
                                " in layer '", m, "'"));
  }
  const int ep = c.autoep_size;
  if (ep > s.num_experts) {
    return Invalid(absl::StrCat(
        "autoep_size=", ep, " exceeds num_experts=", s.num_experts, " in layer '", m,
        "'. Each rank must own at least one expert. Valid autoep_size values (divisors of ",
        s.num_experts, "): ", PyIntList(Divisors(s.num_experts))));
  }
  if (s.num_experts % ep != 0) {
    return Invalid(absl::StrCat(
        "num_experts=", s.num_experts, " in layer '", m, "' is not divisible by autoep_size=", ep,
        ". Suggested autoep_size values: ", PyIntList(Divisors(s.num_experts))));
  }
  s.num_local_experts = s.num_experts / ep;
  return absl::OkStatus();
}

absl::StatusOr<MoeLayerSettings> ResolveLayer(const AutoEpConfig& c, const Preset& p,
                                              const json& hf, int i) {
  MoeLayerSettings s;
  s.layer_index = i;
  s.module_path = absl::StrCat("model.layers.", i, ".mlp");
  UCP_RETURN_IF_ERROR(ResolveCounts(c, p, hf, s));
  UCP_ASSIGN_OR_RETURN(s.hidden, PositiveAttr(hf, "hidden_size", 0));
  const bool moe_width = Attr(hf, "moe_intermediate_size") != nullptr;
  UCP_ASSIGN_OR_RETURN(
      s.intermediate,
      PositiveAttr(hf, moe_width ? "moe_intermediate_size" : "intermediate_size", 0));
  s.score_func = p.score_func;
  if (c.score_func != "auto") {
    s.score_func = c.score_func;
  } else if (const json* f = Attr(hf, "scoring_func");
             f != nullptr && (*f == json("softmax") || *f == json("sigmoid"))) {
    s.score_func = f->get<std::string>();
  }
  s.route_norm = RouteNorm(c, p, hf);
  UCP_ASSIGN_OR_RETURN(s.route_scale, RouteScale(c, hf));
  s.score_apply = c.score_apply == "auto" ? "post" : c.score_apply;
  s.combine_impl = c.combine_impl == "auto" ? "weighted_sum" : c.combine_impl;
  UCP_RETURN_IF_ERROR(ResolveGroups(c, p, hf, s));
  UCP_RETURN_IF_ERROR(ResolveShared(hf, p, s));
  return s;
}

}  // namespace

absl::StatusOr<AutoEpPlan> ResolveAutoEpLayers(const AutoEpConfig& config, const json& hf_config,
                                               int world_size) {
  if (!hf_config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kHf, ": must be a JSON object, got ", DescribeJson(hf_config)));
  }
  UCP_RETURN_IF_ERROR(
      ValidateAutoEpTopology(config, world_size, /*zero_stage=*/0, /*use_data_before=*/false));
  UCP_RETURN_IF_ERROR(RequireFusedLayout(config));
  std::string model_type;
  UCP_RETURN_IF_ERROR(
      ReadString(kHf, JsonField{Attr(hf_config, "model_type"), "model_type"}, &model_type));
  UCP_ASSIGN_OR_RETURN(Preset preset, SelectPreset(config, model_type));
  std::regex pattern;
  try {
    pattern = std::regex(preset.layer_pattern);
  } catch (const std::regex_error& e) {
    return Invalid(absl::StrCat("`expert_parallel.moe_layer_pattern` is not a valid regex '",
                                preset.layer_pattern, "': ", e.what()));
  }
  UCP_ASSIGN_OR_RETURN(int64_t num_layers, PositiveAttr(hf_config, "num_hidden_layers", 0));
  if (num_layers > kMaxLayers) {
    return absl::InvalidArgumentError(absl::StrCat(kHf, ": `num_hidden_layers` ", num_layers,
                                                   " exceeds the limit of ", kMaxLayers));
  }
  AutoEpPlan plan;
  plan.preset = preset.name;
  for (int i = 0; i < num_layers; ++i) {
    UCP_ASSIGN_OR_RETURN(bool sparse, IsSparseLayer(hf_config, preset.family, i));
    if (!sparse || !std::regex_match(absl::StrCat("model.layers.", i, ".mlp"), pattern)) {
      plan.dense_layers.push_back(i);
      continue;
    }
    UCP_ASSIGN_OR_RETURN(MoeLayerSettings layer, ResolveLayer(config, preset, hf_config, i));
    plan.layers.push_back(std::move(layer));
  }
  if (plan.layers.empty()) {
    const std::string source =
        config.preset_model        ? absl::StrCat("preset_model='", *config.preset_model, "'")
        : config.moe_layer_pattern ? absl::StrCat("moe_layer_pattern='", preset.layer_pattern, "'")
                                   : absl::StrCat("model_type='", model_type, "'");
    return Invalid(absl::StrCat("AutoEP: no MoE layers detected for ", source, " in ", num_layers,
                                " decoder layers (expected sparse blocks matching '",
                                preset.layer_pattern, "')"));
  }
  return plan;
}

}  // namespace ucp::runtime
