// The `expert_parallel` block and the AutoEP topology checks (autoep_config.h), after DeepSpeed's
// module_inject/auto_ep_config.py (parse_autoep_config, validate_autoep_config) and
// auto_ep_folding.py (build_folding_spec, validate_folding_global).
#include "runtime/config/autoep_config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <regex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/base/status.h"
#include "runtime/config/autoep_internal.h"
#include "runtime/config/json_fields.h"

namespace ucp::runtime {
namespace {

using internal_autoep::Divisors;
using internal_autoep::Invalid;
using internal_autoep::kWhat;
using internal_autoep::PyIntList;

// Python's repr of a JSON value, for DeepSpeed's load_balance_coeff message.
std::string PyRepr(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null: return "None";
    case nlohmann::json::value_t::boolean: return value.get<bool>() ? "True" : "False";
    case nlohmann::json::value_t::string: {
      std::string out = "'";
      for (char ch : value.get<std::string>()) {
        if (ch == '\\' || ch == '\'') out += '\\';
        out += ch;
      }
      return out + "'";
    }
    case nlohmann::json::value_t::array: {
      std::vector<std::string> items;
      for (const nlohmann::json& item : value) items.push_back(PyRepr(item));
      return absl::StrCat("[", absl::StrJoin(items, ", "), "]");
    }
    case nlohmann::json::value_t::object: {
      std::vector<std::string> items;
      for (auto it = value.begin(); it != value.end(); ++it) {
        items.push_back(absl::StrCat(PyRepr(nlohmann::json(it.key())), ": ", PyRepr(it.value())));
      }
      return absl::StrCat("{", absl::StrJoin(items, ", "), "}");
    }
    default: return value.dump();  // numbers: shortest round trip, "0.0" for floats like Python
  }
}

std::string PyTuple(std::initializer_list<const char*> names) {
  std::vector<std::string> items;
  for (const char* name : names) items.push_back(absl::StrCat("'", name, "'"));
  return absl::StrCat("(", absl::StrJoin(items, ", "), ")");
}

absl::Status ReadOptString(const JsonField& field, std::optional<std::string>* out) {
  if (!field.present()) return absl::OkStatus();
  std::string value;
  UCP_RETURN_IF_ERROR(ReadString(kWhat, field, &value));
  *out = std::move(value);
  return absl::OkStatus();
}

// A direct child or config attribute name: non-empty, no dots (_validate_attr_name).
absl::Status ReadAttrName(const JsonField& field, std::optional<std::string>* out) {
  UCP_RETURN_IF_ERROR(ReadOptString(field, out));
  if (!out->has_value()) return absl::OkStatus();
  if ((*out)->empty())
    return Invalid(absl::StrCat("`", field.path, "` must be a non-empty string"));
  if ((*out)->find('.') != std::string::npos) {
    return Invalid(absl::StrCat("`", field.path,
                                "` must be a direct attribute name (no dots), got '", **out, "'"));
  }
  return absl::OkStatus();
}

absl::Status ReadEnum(const JsonField& field, std::initializer_list<const char*> allowed,
                      std::string* out) {
  UCP_RETURN_IF_ERROR(ReadString(kWhat, field, out));
  for (const char* name : allowed) {
    if (*out == name) return absl::OkStatus();
  }
  return Invalid(
      absl::StrCat("`", field.path, "` must be one of ", PyTuple(allowed), ", got '", *out, "'"));
}

absl::Status ReadPositive(const JsonField& field, int* out) {
  UCP_RETURN_IF_ERROR(ReadInt(kWhat, field, out));
  if (*out < 1) {
    return Invalid(absl::StrCat("`", field.path, "` must be a positive integer, got ", *out));
  }
  return absl::OkStatus();
}

absl::Status ReadOptPositive(const JsonField& field, std::optional<int>* out) {
  if (!field.present()) return absl::OkStatus();
  int value = 0;
  UCP_RETURN_IF_ERROR(ReadInt(kWhat, field, &value));
  if (value < 1) return Invalid(absl::StrCat("`", field.path, "` must be >= 1, got ", value));
  *out = value;
  return absl::OkStatus();
}

absl::Status ReadFinite(const JsonField& field, absl::string_view expected, double* out) {
  if (!field.present()) return absl::OkStatus();
  const nlohmann::json& v = *field.value;
  if (!v.is_number() || !std::isfinite(v.get<double>())) {
    return Invalid(
        absl::StrCat("`", field.path, "` must be ", expected, ", got ", DescribeJson(v)));
  }
  *out = v.get<double>();
  return absl::OkStatus();
}

bool IsAuto(const JsonField& field) {
  return field.present() && field.value->is_string() && field.value->get<std::string>() == "auto";
}

// top_k: an integer >= 1 or "auto".
absl::Status ReadTopK(const JsonField& field, std::optional<int>* out) {
  if (!field.present() || IsAuto(field)) return absl::OkStatus();
  if (!field.value->is_number()) {
    return Invalid(absl::StrCat("`", field.path, "` must be an integer or \"auto\", got ",
                                DescribeJson(*field.value)));
  }
  return ReadOptPositive(field, out);
}

// routed_scaling_factor: a finite number or "auto".
absl::Status ReadScalingFactor(const JsonField& field, std::optional<double>* out) {
  if (!field.present() || IsAuto(field)) return absl::OkStatus();
  double scale = 0;
  UCP_RETURN_IF_ERROR(ReadFinite(field, "a finite number or 'auto'", &scale));
  *out = scale;
  return absl::OkStatus();
}

absl::Status ReadRegex(const JsonField& field, std::optional<std::string>* out) {
  UCP_RETURN_IF_ERROR(ReadOptString(field, out));
  if (!out->has_value()) return absl::OkStatus();
  if ((*out)->empty()) return Invalid(absl::StrCat("`", field.path, "` must be a non-empty regex"));
  try {
    std::regex compiled(**out);
  } catch (const std::regex_error& e) {
    return Invalid(
        absl::StrCat("`", field.path, "` is not a valid regex '", **out, "': ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status ReadNames(const nlohmann::json& block, StrictObject& o, AutoEpConfig& c) {
  UCP_RETURN_IF_ERROR(ReadRegex(o.Get("moe_layer_pattern"), &c.moe_layer_pattern));
  UCP_RETURN_IF_ERROR(ReadAttrName(o.Get("router_pattern"), &c.router_pattern));
  UCP_RETURN_IF_ERROR(ReadAttrName(o.Get("expert_pattern"), &c.expert_pattern));
  UCP_RETURN_IF_ERROR(ReadAttrName(o.Get("expert_w1"), &c.expert_w1));
  UCP_RETURN_IF_ERROR(ReadAttrName(o.Get("expert_w2"), &c.expert_w2));
  // StrictObject treats null as absent; for expert_w3 an explicit null means "fused gate+up".
  c.expert_w3_set = block.contains("expert_w3");
  UCP_RETURN_IF_ERROR(ReadAttrName(o.Get("expert_w3"), &c.expert_w3));
  UCP_RETURN_IF_ERROR(ReadAttrName(o.Get("num_experts_attr"), &c.num_experts_attr));
  UCP_RETURN_IF_ERROR(ReadAttrName(o.Get("top_k_attr"), &c.top_k_attr));
  UCP_RETURN_IF_ERROR(ReadAttrName(o.Get("shared_experts_pattern"), &c.shared_experts_pattern));
  UCP_RETURN_IF_ERROR(
      ReadAttrName(o.Get("shared_experts_gate_pattern"), &c.shared_experts_gate_pattern));
  if (const JsonField f = o.Get("has_shared_experts"); f.present()) {
    if (!f.value->is_boolean()) {
      return Invalid(
          absl::StrCat("`", f.path, "` must be a boolean when set, got ", DescribeJson(*f.value)));
    }
    c.has_shared_experts = f.value->get<bool>();
  }
  return absl::OkStatus();
}

absl::Status ReadRouting(StrictObject& o, AutoEpConfig& c) {
  if (const JsonField f = o.Get("route_norm"); f.present()) {
    bool norm = false;
    UCP_RETURN_IF_ERROR(ReadBool(kWhat, f, &norm));
    c.route_norm = norm;
  }
  UCP_RETURN_IF_ERROR(ReadFinite(o.Get("route_scale"), "a finite number", &c.route_scale));
  UCP_RETURN_IF_ERROR(ReadEnum(o.Get("score_apply"), {"auto", "pre", "post"}, &c.score_apply));
  UCP_RETURN_IF_ERROR(
      ReadEnum(o.Get("combine_impl"), {"auto", "weighted_sum", "legacy_bmm"}, &c.combine_impl));
  UCP_RETURN_IF_ERROR(ReadEnum(o.Get("score_func"), {"auto", "softmax", "sigmoid"}, &c.score_func));
  const JsonField groups = o.Get("num_expert_groups");
  const JsonField limited = o.Get("num_limited_groups");
  UCP_RETURN_IF_ERROR(ReadOptPositive(groups, &c.num_expert_groups));
  UCP_RETURN_IF_ERROR(ReadOptPositive(limited, &c.num_limited_groups));
  if (c.num_expert_groups && c.num_limited_groups && *c.num_limited_groups > *c.num_expert_groups) {
    return Invalid(absl::StrCat("`", limited.path, "`: num_limited_groups (", *c.num_limited_groups,
                                ") must be <= num_expert_groups (", *c.num_expert_groups, ")"));
  }
  UCP_RETURN_IF_ERROR(ReadTopK(o.Get("top_k"), &c.top_k));
  return ReadScalingFactor(o.Get("routed_scaling_factor"), &c.routed_scaling_factor);
}

}  // namespace

const std::vector<std::string>& AutoEpPresetNames() {
  static const std::vector<std::string> kNames = {"mixtral", "qwen3_moe", "qwen3_5_moe",
                                                  "deepseek_v2", "deepseek_v3"};
  return kNames;
}

absl::StatusOr<AutoEpConfig> ParseAutoEpConfig(const nlohmann::json& block,
                                               const std::string& path) {
  if (!block.is_object()) {
    return Invalid(absl::StrCat("`", path, "` must be an object, got ", DescribeJson(block)));
  }
  StrictObject o(block, kWhat, path);
  // Rejected even when AutoEP is disabled (DeepSpeed's _raise_unsupported_load_balance_coeff).
  if (const JsonField f = o.Get("load_balance_coeff"); f.present()) {
    return Invalid(absl::StrCat(
        "`", f.path, "`: load_balance_coeff=", PyRepr(*f.value),
        " is not supported in this AutoEP build (would register expert_bias and route through "
        "unsupported auxiliary-loss-free load balancing). Set load_balance_coeff to null or omit "
        "the key."));
  }
  AutoEpConfig c;
  // DeepSpeed checks its type even when AutoEP is disabled; so does every key here.
  UCP_RETURN_IF_ERROR(
      ReadBool(kWhat, o.Get("validate_folding_routing"), &c.validate_folding_routing));
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, o.Get("enabled"), &c.enabled));
  UCP_RETURN_IF_ERROR(ReadPositive(o.Get("autoep_size"), &c.autoep_size));
  const JsonField etp = o.Get("expert_tensor_parallel_size");
  UCP_RETURN_IF_ERROR(ReadPositive(etp, &c.expert_tensor_parallel_size));
  if (c.expert_tensor_parallel_size != 1) {
    return Invalid(absl::StrCat(
        "`", etp.path,
        "`: expert_parallel.expert_tensor_parallel_size=", c.expert_tensor_parallel_size,
        " is reserved for expert-internal tensor parallelism and is not supported yet. Use "
        "expert_tensor_parallel_size=1"));
  }
  const JsonField preset = o.Get("preset_model");
  UCP_RETURN_IF_ERROR(ReadOptString(preset, &c.preset_model));
  if (c.preset_model) {
    const std::vector<std::string>& names = AutoEpPresetNames();
    if (std::find(names.begin(), names.end(), *c.preset_model) == names.end()) {
      std::vector<std::string> quoted;
      for (const std::string& name : names) quoted.push_back(absl::StrCat("'", name, "'"));
      return Invalid(absl::StrCat("`", preset.path, "`: Unknown preset_model '", *c.preset_model,
                                  "'. Available presets: [", absl::StrJoin(quoted, ", "), "]"));
    }
  }
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, o.Get("use_grouped_mm"), &c.use_grouped_mm));
  UCP_RETURN_IF_ERROR(
      ReadBool(kWhat, o.Get("disable_triton_grouped_mm"), &c.disable_triton_grouped_mm));
  UCP_RETURN_IF_ERROR(ReadNames(block, o, c));
  UCP_RETURN_IF_ERROR(ReadRouting(o, c));
  UCP_RETURN_IF_ERROR(o.Finish());
  return c;
}

absl::Status ValidateAutoEpTopology(const AutoEpConfig& config, int world_size, int zero_stage,
                                    bool use_data_before_expert_parallelism) {
  // Without AutoTP folding, use_data_before_expert_parallelism only swaps the EP/EDP rank
  // layout (§1.6): allowed.
  (void)use_data_before_expert_parallelism;
  if (!config.enabled) return absl::OkStatus();
  for (auto [name, value] : {std::pair{"world_size", world_size},
                             std::pair{"expert_parallel.autoep_size", config.autoep_size},
                             std::pair{"expert_parallel.expert_tensor_parallel_size",
                                       config.expert_tensor_parallel_size}}) {
    if (value < 1) return Invalid(absl::StrCat(name, " must be a positive integer, got ", value));
  }
  if (zero_stage < 0 || zero_stage > 3) {
    return Invalid(absl::StrCat("zero stage must be 0, 1, 2 or 3, got ", zero_stage));
  }
  const int64_t width =
      static_cast<int64_t>(config.autoep_size) * config.expert_tensor_parallel_size;
  if (world_size % width != 0) {
    return Invalid(absl::StrCat(
        "expert_parallel.autoep_size * expert_parallel.expert_tensor_parallel_size (",
        config.autoep_size, " * ", config.expert_tensor_parallel_size, " = ", width,
        ") must divide the stage size (world_size=", world_size, " / pp_size=1 = ", world_size,
        "). Computed edp would be non-integral. Valid expert-width values: ",
        PyIntList(Divisors(world_size))));
  }
  if (config.expert_tensor_parallel_size != 1) {
    return Invalid(absl::StrCat(
        "expert_parallel.expert_tensor_parallel_size=", config.expert_tensor_parallel_size,
        " is reserved for expert-internal tensor parallelism and is not "
        "supported yet. Use expert_tensor_parallel_size=1"));
  }
  return absl::OkStatus();
}

}  // namespace ucp::runtime
