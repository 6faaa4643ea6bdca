// AutoTP's config-driven partitioning rules (deepspeed-runtime.md §2.6): the `tensor_parallel`
// block's `partition_config` (layer_specs: regexes over "<module path>.weight" → column / row /
// skip, an optional sub-parameter `shape`) and `preset_model`, parsed as DeepSpeed's
// autotp_config.py does (stricter: unknown keys and presets are errors naming the key); and the
// legacy heuristic parser's decision for one linear (§2.5). Torch-free.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace ucp::runtime {

enum class TpPartitionType : uint8_t { kColumn, kRow, kSkip };

// One entry of a spec's `shape`: a size (-1: inferred; at the partition dim a positive value is
// the count of equal sub-parameters) or, at the partition dim only, the unequal sub-parameter
// sizes (the nested list `[[q, kv, kv], -1]`).
struct TpShapeDim {
  int64_t size = -1;
  std::vector<int64_t> sub_sizes;  // non-empty: the nested list
};

struct TpLayerSpec {
  std::vector<std::string> patterns;  // Python regexes, re.match (anchored at the start only)
  TpPartitionType type = TpPartitionType::kColumn;
  std::vector<TpShapeDim> shape;  // empty: no sub-parameter view
  std::optional<int> partition_dim;
  std::vector<std::string> model_types;  // lower-cased; empty: every model
  bool gather_output = false;            // column only, not with a shape
  bool grad_allreduce = false;           // skip only: the gradient is summed over TP

  // partition_dim, else 0 for column and 1 for row (a 2-D weight).
  int PartitionDim() const;
  // DeepSpeed's TPLayerSpec.matches: the model_types filter (case-insensitive), then any pattern.
  bool Matches(const std::string& param_name, const std::string& model_type) const;

  std::vector<std::shared_ptr<const std::regex>> compiled;  // one per pattern
};

struct TpPartitionConfig {
  std::vector<TpLayerSpec> layer_specs;
  bool use_default_specs = true;  // with a preset: custom specs first, then the preset's
  bool strict_mode = false;       // a linear no spec matches is an error
};

// The partitioning keys of the `tensor_parallel` block.
struct TpPartitionSettings {
  std::string preset_model;  // "" when absent
  std::optional<TpPartitionConfig> partition_config;
  // §2.2: config-driven specs take priority over the model's tp_plan and the heuristic.
  bool config_driven() const { return !preset_model.empty() || partition_config.has_value(); }
  // DeepSpeed's get_partition_config_object: the preset's specs, custom specs prepended
  // (use_default_specs) or alone.
  std::vector<TpLayerSpec> Specs() const;
  bool strict_mode() const { return partition_config && partition_config->strict_mode; }
};

// `block` is tensor_parallel.partition_config, `path` its key path. InvalidArgument naming the key
// (unknown keys with "did you mean", bad regexes, shapes DeepSpeed's _validate_shape_format
// rejects, gather_output with a shape or on a row/skip spec, grad_allreduce off a skip spec).
absl::StatusOr<TpPartitionConfig> ParseTpPartitionConfig(const nlohmann::json& block,
                                                         const std::string& path);

// DeepSpeed's presets (llama, qwen2, mixtral, deepseek_v2, bloom, chatglm, phi3; case-insensitive).
const std::vector<std::string>& TpPresetNames();
// The preset's specs; empty for an unknown name (validate with TpPresetNames first).
std::vector<TpLayerSpec> TpPresetSpecs(const std::string& name);

// The legacy heuristic (AutoTP.tp_parser + _replace, §2.5) for a linear inside a decoder layer,
// by module path ("model.layers.0.self_attn.o_proj"): row for o_proj / out_proj / down_proj /
// w2 / dense_4h_to_h / attention.dense, skip for MoE routers and DeepSeek's low-rank
// projections, column otherwise. Linears outside the layers (lm_head) stay replicated in
// training; the caller decides which modules are inside a layer.
TpPartitionType HeuristicPartitionType(const std::string& module_path);

}  // namespace ucp::runtime
