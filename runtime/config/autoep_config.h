// AutoEP (automatic expert parallelism, specs/deepspeed-runtime.md §1.1-1.2), torch-free:
//  - AutoEpConfig: the ds_config `expert_parallel` block with DeepSpeed's keys and defaults,
//    parsed strictly (unknown keys are errors with a "did you mean"), checked as DeepSpeed's
//    parse_autoep_config + validate_autoep_config check it;
//  - ValidateAutoEpTopology: the EP/EDP arithmetic DeepSpeed checks before any process group;
//  - ResolveAutoEpLayers: which decoder layers of a Hugging Face config.json are MoE blocks and
//    the router settings DeepSpeed's presets resolve for each (E, K, score function, route_norm,
//    route_scale, group-limited routing, shared experts), then the post-detection checks.
// Every error is InvalidArgument naming the key path (`expert_parallel.<key>` or
// `config.json: <attr>`); where DeepSpeed raises ValueError the message keeps its words.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace ucp::runtime {

// The names DeepSpeed's preset registry knows, in registry order.
const std::vector<std::string>& AutoEpPresetNames();

struct AutoEpConfig {
  bool enabled = false;
  int autoep_size = 1;
  int expert_tensor_parallel_size = 1;  // reserved by DeepSpeed: only 1 is accepted
  bool validate_folding_routing = false;
  std::optional<std::string> preset_model;  // one of AutoEpPresetNames()
  // Overrides of the preset (or the fields of the "custom" preset).
  std::optional<std::string> moe_layer_pattern;  // regex, full match over module names
  std::optional<std::string> router_pattern, expert_pattern;
  bool use_grouped_mm = true;
  bool disable_triton_grouped_mm = false;
  std::optional<bool> route_norm;  // absent/null: resolved per preset (§1.2)
  double route_scale = 1.0;
  std::string score_apply = "auto";   // auto, pre, post
  std::string combine_impl = "auto";  // auto (= weighted_sum), weighted_sum, legacy_bmm
  std::optional<int> num_expert_groups, num_limited_groups;
  std::string score_func = "auto";              // auto, softmax, sigmoid
  std::optional<int> top_k;                     // absent: "auto" (the config.json attribute)
  std::optional<double> routed_scaling_factor;  // absent: "auto"
  std::optional<std::string> expert_w1, expert_w2;
  // Three states: absent (expert_w3_set false) = preset default; explicit null = fused
  // gate+up (no separate w3); a string = the separate up projection.
  bool expert_w3_set = false;
  std::optional<std::string> expert_w3;
  std::optional<std::string> num_experts_attr, top_k_attr;
  std::optional<bool> has_shared_experts;
  std::optional<std::string> shared_experts_pattern, shared_experts_gate_pattern;
};

// Parses the `expert_parallel` object found at key path `path` ("expert_parallel"). Values are
// checked whether or not `enabled` is true; a non-null `load_balance_coeff` is rejected with
// DeepSpeed's message (it would need expert_bias). InvalidArgument names the key path.
absl::StatusOr<AutoEpConfig> ParseAutoEpConfig(const nlohmann::json& block,
                                               const std::string& path);

// DeepSpeed's build_folding_spec / validate_folding_global for AutoEP without AutoTP (tp=pp=1):
// positive sizes, `autoep_size * expert_tensor_parallel_size` divides `world_size` ("Computed
// edp would be non-integral"), etp == 1. ZeRO-3 is allowed (its extra gates concern features
// ucp rejects elsewhere). OK when AutoEP is disabled.
absl::Status ValidateAutoEpTopology(const AutoEpConfig& config, int world_size, int zero_stage,
                                    bool use_data_before_expert_parallelism);

// One MoE block as DeepSpeed's AutoEP resolves it (its MoELayerSpec, torch-free part).
struct MoeLayerSettings {
  int layer_index = 0;
  std::string module_path;  // "model.layers.{i}.mlp"
  int num_experts = 0, top_k = 0;
  int num_local_experts = 0;  // num_experts / autoep_size
  int64_t hidden = 0;
  int64_t intermediate = 0;    // moe_intermediate_size, or intermediate_size (mixtral)
  std::string score_func;      // "softmax" or "sigmoid"
  bool route_norm = false;     // renormalise the top-k scores
  double route_scale = 1.0;    // multiplier on the routing weights
  std::string score_apply;     // "post" or "pre"
  std::string combine_impl;    // "weighted_sum" or "legacy_bmm"
  int num_expert_groups = 0;   // 0: no group-limited routing
  int num_limited_groups = 0;  // 0: none
  std::string group_score;     // "max" or "top2_sum"
  bool gate_bias = false;      // HF routers of these families have no bias
  bool shared_experts = false, shared_experts_gate = false;
  std::string shared_prefix;  // HF child: "shared_expert" (qwen) or "shared_experts"
  int64_t shared_intermediate = 0;
};

struct AutoEpPlan {
  std::string preset;  // a name of AutoEpPresetNames() or "custom"
  std::vector<MoeLayerSettings> layers;
  std::vector<int> dense_layers;  // decoder layers whose mlp stays dense
};

// Resolves the MoE layers of a Hugging Face config.json (`hf_config`) under `config` (§1.2):
// preset from preset_model, else model_type, else moe_layer_pattern ("custom"); per layer the
// settings above; then DeepSpeed's post-detection checks (autoep_size <= E and divides E,
// K <= E, group bounds). Attributes absent from config.json count as unset (a config.json
// written by save_pretrained carries all of them). InvalidArgument otherwise; Unimplemented for
// router/expert/weight-name overrides other than the Transformers 5.x fused layout (router
// `gate`, experts `experts` with `gate_up_proj` and `down_proj`, no separate w3), the only one
// ucp's runtime reads.
absl::StatusOr<AutoEpPlan> ResolveAutoEpLayers(const AutoEpConfig& config,
                                               const nlohmann::json& hf_config, int world_size);

}  // namespace ucp::runtime
