#include "runtime/config/tp_partition.h"

#include <numeric>
#include <optional>
#include <unordered_map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/base/status.h"

namespace ucp::runtime {
namespace {

absl::Status Invalid(absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("tensor_parallel: ", message));
}

int64_t Prod(const std::vector<int64_t>& v, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to && i < v.size(); ++i) p *= v[i];
  return p;
}

std::string ModuleOf(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? std::string() : name.substr(0, dot);
}

bool IsEmbedding(const std::string& module) {
  const size_t dot = module.rfind('.');
  const std::string leaf = dot == std::string::npos ? module : module.substr(dot + 1);
  return absl::StrContains(leaf, "embed") || leaf == "wte" || leaf == "wpe";
}

// What a spec, the tp_plan or the heuristic decided for one linear module.
struct LinearRule {
  TpPartitionType type = TpPartitionType::kSkip;
  bool gather = false;
  const TpLayerSpec* spec = nullptr;  // the config spec (for its shape), if any
};

// A plain split of dimension `dim` (the whole of it one sub-parameter).
TpParamSplit Plain(TpStyle style, int dim, int64_t size, int tp, const std::string& name,
                   int64_t kv) {
  TpParamSplit s;
  s.style = style;
  s.row = style == TpStyle::kRow;
  s.dim = dim;
  s.widths = {ShardSizes(size, tp, name, kv)};
  return s;
}

// DeepSpeed's _infer_subparam_logical_shapes for a [out, in] weight and a spec's shape: the
// logical view, the partition dim and the sub-parameter sizes along it.
absl::Status SubParamSplit(const TpLayerSpec& spec, const std::string& name,
                           const std::vector<int64_t>& w, int tp, int64_t kv, TpParamSplit* s) {
  const std::string label = absl::StrCat("the shape spec of ", name);
  const int pd = spec.PartitionDim();
  const size_t n = spec.shape.size();
  std::vector<std::optional<int64_t>> logical(n);
  std::vector<int64_t> sub;
  int64_t count = 0;
  for (size_t i = 0; i < n; ++i) {
    const TpShapeDim& d = spec.shape[i];
    if (static_cast<int>(i) == pd) {
      if (!d.sub_sizes.empty()) {
        sub = d.sub_sizes;
        logical[i] = std::accumulate(sub.begin(), sub.end(), int64_t{0});
      } else if (d.size > 0) {
        count = d.size;
      }
    } else if (d.size > 0) {
      logical[i] = d.size;
    }
  }
  const int64_t total = w[0] * w[1];
  int64_t known = 1;
  std::vector<size_t> unknown;
  for (size_t i = 0; i < n; ++i) {
    if (logical[i]) {
      known *= *logical[i];
    } else {
      unknown.push_back(i);
    }
  }
  if (unknown.empty() && known != total)
    return Invalid(absl::StrCat(label, ": shape product ", known, " != weight numel ", total));
  if (unknown.size() == 1) {
    if (known <= 0 || total % known != 0)
      return Invalid(absl::StrCat(label, ": cannot infer shape for weight with numel ", total));
    logical[unknown[0]] = total / known;
  } else if (unknown.size() > 1) {
    if (n != 2)
      return Invalid(absl::StrCat(label, ": shape has multiple inferred dims and is ambiguous"));
    for (size_t i : unknown) logical[i] = w[i];
    if (*logical[0] * *logical[1] != total)
      return Invalid(absl::StrCat(label, ": shape product != weight numel ", total));
  }
  std::vector<int64_t> l;
  for (const auto& d : logical) l.push_back(*d);
  if (l.back() != w[1])
    return Invalid(
        absl::StrCat(label, ": shape last dim ", l.back(), " must match weight input dim ", w[1]));
  if (n < 2 || Prod(l, 0, n - 1) != w[0])
    return Invalid(absl::StrCat(label, ": output shape product ", Prod(l, 0, n - 1),
                                " != weight output dim ", w[0]));
  const int64_t pd_size = l[static_cast<size_t>(pd)];
  if (count > 0) {
    if (pd_size % count != 0)
      return Invalid(absl::StrCat(label, ": partition_dim size ", pd_size,
                                  " not divisible by sub-param count ", count));
    sub.assign(static_cast<size_t>(count), pd_size / count);
  }
  if (sub.empty()) sub = {pd_size};
  const bool input_dim = pd == static_cast<int>(n) - 1;
  // A column layer must cut its outputs and a row layer its inputs: anything else makes a shape
  // DeepSpeed's forward cannot multiply (or sums unrelated rows).
  if ((spec.type == TpPartitionType::kColumn) == input_dim)
    return absl::UnimplementedError(absl::StrCat(
        "tensor_parallel: ", label, ": a ",
        spec.type == TpPartitionType::kColumn ? "column" : "row", " spec with partition_dim ", pd,
        " cuts the weight's ", input_dim ? "input" : "output",
        " dimension; ucp train supports column specs that partition an output dim and row specs "
        "that partition the last (input) dim"));
  s->dim = input_dim ? 1 : 0;
  s->outer = input_dim ? 1 : Prod(l, 0, static_cast<size_t>(pd));
  s->inner = input_dim ? 1 : Prod(l, static_cast<size_t>(pd) + 1, n - 1);
  s->widths.clear();
  for (int64_t size : sub) s->widths.push_back(ShardSizes(size, tp, name, kv));
  s->sub_params = true;
  s->partition_dim = pd;
  s->published_shape = nlohmann::json::array();
  for (size_t i = 0; i < n; ++i) {
    if (static_cast<int>(i) == pd) {
      s->published_shape.push_back(sub);
    } else {
      s->published_shape.push_back(spec.shape[i].size);
    }
  }
  s->bias_published_shape = nlohmann::json::array();
  for (size_t i = 0; i + 1 < n; ++i) {
    if (static_cast<int>(i) == pd) {
      s->bias_published_shape.push_back(sub);
    } else {
      s->bias_published_shape.push_back(l[i]);
    }
  }
  return absl::OkStatus();
}

// The split of a column bias: the weight's rows; a sub-parameter bias publishes the resolved
// output shape (_bias_subparam_shape_spec).
TpParamSplit BiasSplit(const TpParamSplit& weight) {
  TpParamSplit b = weight;
  b.published_shape = weight.bias_published_shape;
  return b;
}

}  // namespace

std::vector<std::pair<int64_t, int64_t>> TpParamSplit::Pieces(int rank) const {
  std::vector<std::pair<int64_t, int64_t>> out;
  if (!sharded()) return out;
  int64_t block = 0;  // the partition dim's extent, all sub-parameters
  for (const auto& w : widths) block += std::accumulate(w.begin(), w.end(), int64_t{0});
  for (int64_t o = 0; o < outer; ++o) {
    int64_t sub_begin = 0;
    for (const auto& w : widths) {
      int64_t begin = sub_begin;
      for (int r = 0; r < rank; ++r) begin += w[static_cast<size_t>(r)];
      const int64_t len = w[static_cast<size_t>(rank)] * inner;
      const int64_t start = (o * block + begin) * inner;
      if (!out.empty() && out.back().first + out.back().second == start) {
        out.back().second += len;
      } else if (len > 0) {
        out.emplace_back(start, len);
      }
      sub_begin += std::accumulate(w.begin(), w.end(), int64_t{0});
    }
  }
  return out;
}

int64_t TpParamSplit::Width(int rank) const {
  int64_t n = 0;
  for (const auto& w : widths) n += w[static_cast<size_t>(rank)];
  return n * outer * inner;
}

int64_t TpNumKvHeads(const nlohmann::json& c) {
  for (const char* key : {"multi_query_group_num", "num_kv_heads", "num_key_value_heads",
                          "num_attention_heads", "n_heads", "attention_heads"}) {
    if (c.contains(key) && c[key].is_number_integer()) return c[key].get<int64_t>();
  }
  return 0;
}

absl::StatusOr<TpPartition> PartitionForTp(const TpPartitionSettings& settings,
                                           const nlohmann::json& hf_config,
                                           const std::vector<TpParamInfo>& params, int tp) {
  TpPartition out;
  out.splits.resize(params.size());
  const std::string model_type = hf_config.value("model_type", std::string());
  const int64_t kv = TpNumKvHeads(hf_config);
  const std::vector<TpLayerSpec> specs = settings.Specs();
  std::optional<TpPlan> plan;
  const bool no_plan =
      hf_config.contains("base_model_tp_plan") &&
      (hf_config["base_model_tp_plan"].is_null() || hf_config["base_model_tp_plan"].empty());
  if (settings.config_driven()) {
    out.source = "partition_config";
  } else if (!no_plan) {
    UCP_ASSIGN_OR_RETURN(plan, TpPlanOf(hf_config));
    out.source = "hf_tp_plan";
  } else {
    out.source = "heuristic";
  }
  auto first_match = [&](const std::string& name) -> const TpLayerSpec* {
    for (const TpLayerSpec& s : specs) {
      if (s.Matches(name, model_type)) return &s;
    }
    return nullptr;
  };
  bool preset_used = false;
  const bool preset_in_effect =
      !settings.preset_model.empty() &&
      (!settings.partition_config || settings.partition_config->use_default_specs);
  const size_t custom = settings.partition_config ? settings.partition_config->layer_specs.size()
                                                  : 0;  // specs before the preset's
  // The rule of each linear module, by its weight.
  auto rule_of = [&](const std::string& weight, const std::vector<int64_t>& shape,
                     LinearRule* rule) -> absl::Status {
    const std::string module = ModuleOf(weight);
    if (out.source == "partition_config") {
      const TpLayerSpec* s = first_match(weight);
      if (s == nullptr) {
        if (settings.strict_mode())
          return Invalid(
              absl::StrCat("partition_config.strict_mode: no layer spec matches ", weight));
        return absl::OkStatus();
      }
      preset_used =
          preset_used || (preset_in_effect && static_cast<size_t>(s - specs.data()) >= custom);
      rule->type = s->type;
      rule->gather = s->gather_output;
      rule->spec = s;
      return absl::OkStatus();
    }
    if (plan) {
      const TpStyle style = StyleOf(*plan, weight);
      if (style == TpStyle::kColumn || style == TpStyle::kColumnGather)
        rule->type = TpPartitionType::kColumn;
      if (style == TpStyle::kRow) rule->type = TpPartitionType::kRow;
      rule->gather = style == TpStyle::kColumnGather;
      return absl::OkStatus();
    }
    // The heuristic replaces linears inside the decoder layers only (lm_head stays replicated
    // in training).
    if (absl::StrContains(module, ".layers.") && shape.size() == 2)
      rule->type = HeuristicPartitionType(module);
    return absl::OkStatus();
  };
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < params.size(); ++i) index[params[i].name] = i;
  for (size_t i = 0; i < params.size(); ++i) {
    const TpParamInfo& p = params[i];
    const std::string module = ModuleOf(p.name);
    const bool weight = absl::EndsWith(p.name, ".weight");
    TpParamSplit& s = out.splits[i];
    // grad_allreduce: DeepSpeed's hook matches every parameter by its own name.
    if (out.source == "partition_config") {
      const TpLayerSpec* g = first_match(p.name);
      if (g != nullptr && g->type == TpPartitionType::kSkip && g->grad_allreduce)
        s.style = TpStyle::kGradAllreduce;
    } else if (plan && StyleOf(*plan, p.name) == TpStyle::kGradAllreduce) {
      s.style = TpStyle::kGradAllreduce;
    }
    if (p.shape.size() != 2 || !weight) continue;  // biases follow their weight below
    if (IsEmbedding(module)) {
      // DeepSpeed slices an embedding a spec or plan entry names along its hidden dim and
      // gathers nothing after it; the decoder's residual needs the whole hidden size.
      std::string kind;
      if (out.source == "partition_config") {
        const TpLayerSpec* e = first_match(p.name);
        if (e != nullptr && e->type != TpPartitionType::kSkip)
          kind = e->type == TpPartitionType::kRow ? "a row spec" : "a column spec";
      } else if (plan) {
        const TpStyle style = StyleOf(*plan, p.name);
        if (style != TpStyle::kReplicated && style != TpStyle::kGradAllreduce) kind = "the tp_plan";
      }
      if (!kind.empty())
        return absl::UnimplementedError(absl::StrCat(
            "tensor_parallel: ", kind, " splits the embedding ", p.name,
            ": DeepSpeed would slice its hidden dim with no output gather; ucp train keeps "
            "embeddings replicated (skip it)"));
      continue;
    }
    LinearRule rule;
    UCP_RETURN_IF_ERROR(rule_of(p.name, p.shape, &rule));
    if (rule.type == TpPartitionType::kSkip) continue;
    const bool column = rule.type == TpPartitionType::kColumn;
    if (rule.spec != nullptr && !rule.spec->shape.empty()) {
      s.style = column ? TpStyle::kColumn : TpStyle::kRow;
      s.row = !column;
      UCP_RETURN_IF_ERROR(SubParamSplit(*rule.spec, p.name, p.shape, tp, kv, &s));
    } else {
      const TpStyle style =
          column ? (rule.gather ? TpStyle::kColumnGather : TpStyle::kColumn) : TpStyle::kRow;
      s = Plain(style, column ? 0 : 1, p.shape[column ? 0 : 1], tp, p.name, kv);
    }
    // The module's bias: split with a column weight, replicated under a row one.
    if (auto b = index.find(module + ".bias"); b != index.end())
      out.splits[b->second] = column ? BiasSplit(s) : TpParamSplit{};
  }
  if (preset_in_effect && !preset_used) {
    std::vector<std::string> patterns;
    for (const TpLayerSpec& s : TpPresetSpecs(settings.preset_model))
      patterns.insert(patterns.end(), s.patterns.begin(), s.patterns.end());
    return absl::UnimplementedError(absl::StrCat(
        "tensor_parallel.preset_model \"", settings.preset_model,
        "\" matches none of the model's parameters (its patterns: ", absl::StrJoin(patterns, ", "),
        "); model_type \"", model_type,
        "\" needs preset llama or qwen2 (separate q/k/v and gate/up projections), or a "
        "partition_config"));
  }
  return out;
}

}  // namespace ucp::runtime
