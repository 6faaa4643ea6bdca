#include "runtime/config/tp_specs.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/base/status.h"
#include "runtime/config/json_fields.h"

namespace ucp::runtime {
namespace {

constexpr char kWhat[] = "ds_config";

absl::Status Invalid(absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(kWhat, ": ", message));
}

absl::StatusOr<std::shared_ptr<const std::regex>> Compile(const std::string& pattern,
                                                          const std::string& path) {
  try {
    return std::make_shared<const std::regex>(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return Invalid(absl::StrCat("`", path, "` is not a valid regex '", pattern, "': ", e.what()));
  }
}

absl::Status ReadStrings(const JsonField& f, std::vector<std::string>* out) {
  if (!f.present()) return absl::OkStatus();
  if (!f.value->is_array())
    return Invalid(
        absl::StrCat("`", f.path, "` must be a list of strings, got ", DescribeJson(*f.value)));
  for (size_t i = 0; i < f.value->size(); ++i) {
    const nlohmann::json& s = (*f.value)[i];
    if (!s.is_string())
      return Invalid(
          absl::StrCat("`", f.path, "[", i, "]` must be a string, got ", DescribeJson(s)));
    out->push_back(s.get<std::string>());
  }
  return absl::OkStatus();
}

// `shape`: ints (positive or -1) and at most one nested list of positive ints, at the
// partition dim (TPLayerSpec._validate_shape_format).
absl::Status ReadShape(const JsonField& f, TpLayerSpec& spec) {
  if (!f.present()) return absl::OkStatus();
  const nlohmann::json& v = *f.value;
  if (!v.is_array() || v.empty())
    return Invalid(absl::StrCat("`", f.path,
                                "` must be a non-empty list of integers (at most one nested list "
                                "at partition_dim), got ",
                                DescribeJson(v)));
  const int pd = spec.PartitionDim();
  if (pd < 0 || pd >= static_cast<int>(v.size()))
    return Invalid(absl::StrCat("`", f.path, "`: partition_dim ", pd,
                                " is out of range for shape length ", v.size()));
  for (size_t i = 0; i < v.size(); ++i) {
    TpShapeDim d;
    const std::string at = absl::StrCat(f.path, "[", i, "]");
    if (v[i].is_array()) {
      if (static_cast<int>(i) != pd)
        return Invalid(
            absl::StrCat("`", at, "`: a nested list is only allowed at partition_dim ", pd));
      if (v[i].empty()) return Invalid(absl::StrCat("`", at, "` cannot be empty"));
      for (const nlohmann::json& s : v[i]) {
        if (!s.is_number_integer() || s.get<int64_t>() <= 0)
          return Invalid(absl::StrCat("`", at,
                                      "`: sub-parameter sizes must be positive integers (one "
                                      "level of nesting), got ",
                                      DescribeJson(s)));
        d.sub_sizes.push_back(s.get<int64_t>());
      }
    } else if (v[i].is_number_integer()) {
      d.size = v[i].get<int64_t>();
      if (d.size == 0 || d.size < -1)
        return Invalid(absl::StrCat("`", at, "` must be a positive integer or -1, got ", d.size));
    } else {
      return Invalid(absl::StrCat("`", at, "` must be an integer or a list of integers, got ",
                                  DescribeJson(v[i])));
    }
    spec.shape.push_back(std::move(d));
  }
  return absl::OkStatus();
}

absl::StatusOr<TpLayerSpec> ParseSpec(const nlohmann::json& block, const std::string& path) {
  if (!block.is_object())
    return Invalid(absl::StrCat("`", path, "` must be an object, got ", DescribeJson(block)));
  StrictObject o(block, kWhat, path);
  TpLayerSpec spec;
  const JsonField patterns = o.Get("patterns");
  UCP_RETURN_IF_ERROR(ReadStrings(patterns, &spec.patterns));
  if (spec.patterns.empty())
    return Invalid(absl::StrCat("`", patterns.path, "` must list at least one regex"));
  for (size_t i = 0; i < spec.patterns.size(); ++i) {
    UCP_ASSIGN_OR_RETURN(auto re,
                         Compile(spec.patterns[i], absl::StrCat(patterns.path, "[", i, "]")));
    spec.compiled.push_back(std::move(re));
  }
  const JsonField type = o.Get("partition_type");
  std::string t = "column";
  UCP_RETURN_IF_ERROR(ReadString(kWhat, type, &t));
  const std::string lower = absl::AsciiStrToLower(t);
  if (lower == "column") {
    spec.type = TpPartitionType::kColumn;
  } else if (lower == "row") {
    spec.type = TpPartitionType::kRow;
  } else if (lower == "skip") {
    spec.type = TpPartitionType::kSkip;
  } else {
    return Invalid(absl::StrCat("`", type.path, "` must be column, row or skip, got '", t, "'"));
  }
  const JsonField pd = o.Get("partition_dim");
  if (pd.present()) {
    int dim = 0;
    UCP_RETURN_IF_ERROR(ReadInt(kWhat, pd, &dim));
    spec.partition_dim = dim;
  }
  UCP_RETURN_IF_ERROR(ReadShape(o.Get("shape"), spec));
  UCP_RETURN_IF_ERROR(ReadStrings(o.Get("model_types"), &spec.model_types));
  for (std::string& m : spec.model_types) m = absl::AsciiStrToLower(m);
  const JsonField gather = o.Get("gather_output");
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, gather, &spec.gather_output));
  if (spec.gather_output && spec.type != TpPartitionType::kColumn)
    return Invalid(absl::StrCat("`", gather.path, "` applies to column specs only"));
  if (spec.gather_output && !spec.shape.empty())
    return Invalid(absl::StrCat("`", gather.path,
                                "`: AutoTP gather_output does not support shaped sub-parameter "
                                "layers (DeepSpeed raises NotImplementedError)"));
  const JsonField grad = o.Get("grad_allreduce");
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, grad, &spec.grad_allreduce));
  if (spec.grad_allreduce && spec.type != TpPartitionType::kSkip)
    return Invalid(absl::StrCat("`", grad.path,
                                "` applies to skip specs only (a replicated parameter whose "
                                "gradient is summed over the TP group)"));
  UCP_RETURN_IF_ERROR(o.Finish());
  return spec;
}

TpLayerSpec Preset(std::vector<std::string> patterns, TpPartitionType type,
                   std::vector<TpShapeDim> shape = {}) {
  TpLayerSpec s;
  s.patterns = std::move(patterns);
  s.type = type;
  s.shape = std::move(shape);
  if (!s.shape.empty()) s.partition_dim = 0;
  for (const std::string& p : s.patterns) s.compiled.push_back(std::make_shared<std::regex>(p));
  return s;
}

}  // namespace

int TpLayerSpec::PartitionDim() const {
  return partition_dim.value_or(type == TpPartitionType::kColumn ? 0 : 1);
}

bool TpLayerSpec::Matches(const std::string& param_name, const std::string& model_type) const {
  if (!model_types.empty()) {
    const std::string m = absl::AsciiStrToLower(model_type);
    if (model_type.empty() ||
        std::find(model_types.begin(), model_types.end(), m) == model_types.end())
      return false;
  }
  for (const auto& re : compiled) {
    // re.match: anchored at the start, not at the end.
    if (std::regex_search(param_name, *re, std::regex_constants::match_continuous)) return true;
  }
  return false;
}

std::vector<TpLayerSpec> TpPartitionSettings::Specs() const {
  std::vector<TpLayerSpec> preset = TpPresetSpecs(preset_model);
  if (!partition_config) return preset;
  std::vector<TpLayerSpec> out = partition_config->layer_specs;
  if (!preset_model.empty() && partition_config->use_default_specs)
    out.insert(out.end(), preset.begin(), preset.end());
  return out;
}

absl::StatusOr<TpPartitionConfig> ParseTpPartitionConfig(const nlohmann::json& block,
                                                         const std::string& path) {
  if (!block.is_object())
    return Invalid(absl::StrCat("`", path, "` must be an object, got ", DescribeJson(block)));
  StrictObject o(block, kWhat, path);
  TpPartitionConfig c;
  const JsonField specs = o.Get("layer_specs");
  if (specs.present()) {
    if (!specs.value->is_array())
      return Invalid(absl::StrCat("`", specs.path, "` must be a list of layer specs, got ",
                                  DescribeJson(*specs.value)));
    for (size_t i = 0; i < specs.value->size(); ++i) {
      UCP_ASSIGN_OR_RETURN(TpLayerSpec s,
                           ParseSpec((*specs.value)[i], absl::StrCat(specs.path, "[", i, "]")));
      c.layer_specs.push_back(std::move(s));
    }
  }
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, o.Get("use_default_specs"), &c.use_default_specs));
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, o.Get("strict_mode"), &c.strict_mode));
  // Parsed and unused by DeepSpeed's training path (tp_size is overwritten by autotp_size).
  o.Known({"tp_size", "embedding_partition_dim", "lm_head_patterns"});
  UCP_RETURN_IF_ERROR(o.Finish());
  return c;
}

const std::vector<std::string>& TpPresetNames() {
  static const std::vector<std::string> kNames = {"llama",       "bloom", "chatglm", "mixtral",
                                                  "deepseek_v2", "qwen2", "phi3"};
  return kNames;
}

std::vector<TpLayerSpec> TpPresetSpecs(const std::string& raw) {
  using T = TpPartitionType;
  const std::string name = absl::AsciiStrToLower(raw);
  const TpShapeDim inferred;
  auto equal = [&](int64_t n) { return std::vector<TpShapeDim>{{n, {}}, inferred}; };
  if (name == "llama" || name == "qwen2") {
    return {Preset({R"(.*\.self_attn\.o_proj\.weight$)"}, T::kRow),
            Preset({R"(.*\.self_attn\.[qkv]_proj\.weight$)"}, T::kColumn),
            Preset({R"(.*\.mlp\.down_proj\.weight$)"}, T::kRow),
            Preset({R"(.*\.mlp\.(up|gate)_proj\.weight$)"}, T::kColumn)};
  }
  if (name == "bloom" || name == "chatglm") {
    const bool glm = name == "chatglm";
    return {Preset({R"(.*\.self_attention\.dense\.weight$)"}, T::kRow),
            Preset({R"(.*\.self_attention\.query_key_value\.weight$)"}, T::kColumn,
                   glm ? equal(3) : std::vector<TpShapeDim>{}),
            Preset({R"(.*\.mlp\.dense_4h_to_h\.weight$)"}, T::kRow),
            Preset({R"(.*\.mlp\.dense_h_to_4h\.weight$)"}, T::kColumn,
                   glm ? equal(2) : std::vector<TpShapeDim>{})};
  }
  if (name == "mixtral") {
    return {Preset({R"(.*\.self_attn\.o_proj\.weight$)"}, T::kRow),
            Preset({R"(.*\.self_attn\.[qkv]_proj\.weight$)"}, T::kColumn),
            Preset({R"(.*\.block_sparse_moe\.experts\.\d+\.w2\.weight$)"}, T::kRow),
            Preset({R"(.*\.block_sparse_moe\.experts\.\d+\.w[13]\.weight$)"}, T::kColumn),
            Preset({R"(.*\.block_sparse_moe\.gate\.weight$)"}, T::kSkip)};
  }
  if (name == "deepseek_v2") {
    return {Preset({R"(.*\.self_attn\.o_proj\.weight$)"}, T::kRow),
            Preset({R"(.*\.self_attn\.(q_a_proj|kv_a_proj_with_mqa)\.weight$)"}, T::kSkip),
            Preset({R"(.*\.self_attn\.(q_b_proj|kv_b_proj)\.weight$)"}, T::kColumn),
            Preset({R"(.*\.mlp\.experts\.\d+\.down_proj\.weight$)"}, T::kRow),
            Preset({R"(.*\.mlp\.experts\.\d+\.(up|gate)_proj\.weight$)"}, T::kColumn),
            Preset({R"(.*\.mlp\.gate\.weight$)"}, T::kSkip),
            Preset({R"(.*\.mlp\.shared_experts\.down_proj\.weight$)"}, T::kRow),
            Preset({R"(.*\.mlp\.shared_experts\.(up|gate)_proj\.weight$)"}, T::kColumn)};
  }
  if (name == "phi3") {
    return {Preset({R"(.*\.self_attn\.o_proj\.weight$)"}, T::kRow),
            Preset({R"(.*\.self_attn\.qkv_proj\.weight$)"}, T::kColumn, equal(3)),
            Preset({R"(.*\.mlp\.down_proj\.weight$)"}, T::kRow),
            Preset({R"(.*\.mlp\.gate_up_proj\.weight$)"}, T::kColumn, equal(2))};
  }
  return {};
}

TpPartitionType HeuristicPartitionType(const std::string& m) {
  if (absl::EndsWith(m, ".mlp.gate") || absl::StrContains(m, "block_sparse_moe.gate") ||
      absl::StrContains(m, "q_a_proj") || absl::StrContains(m, "kv_a_proj_with_mqa") ||
      absl::StrContains(m, "shared_expert_gate"))
    return TpPartitionType::kSkip;
  for (const char* row :
       {"out_proj", "o_proj", "down_proj", "dense_4h_to_h", "attention.dense", "self_attn.dense"}) {
    if (absl::StrContains(m, row)) return TpPartitionType::kRow;
  }
  if (absl::EndsWith(m, ".w2")) return TpPartitionType::kRow;  // Mixtral / Arctic experts
  return TpPartitionType::kColumn;
}

}  // namespace ucp::runtime
