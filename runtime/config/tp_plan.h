// AutoTP's partitioning of a Hugging Face decoder (deepspeed-runtime.md §2.2-2.4, 2.7): which
// parameters are column-parallel (split along dim 0), column-parallel with a gathered output,
// row-parallel (split along dim 1) or replicated, from the model's tp_plan (config.json's
// base_model_tp_plan merged with the model class's _tp_plan: lm_head colwise_gather_output), and
// DeepSpeed's head-aware uneven shard sizes. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace ucp::runtime {

enum class TpStyle : uint8_t {
  kReplicated,     // every TP rank holds the whole tensor
  kColumn,         // weight (and bias) split along dim 0 (outputs)
  kColumnGather,   // as kColumn, the output all-gathered to full width (lm_head)
  kRow,            // weight split along dim 1 (inputs); bias replicated
  kGradAllreduce,  // replicated, its gradient summed over TP (replicated_with_grad_allreduce)
};

struct TpPlan {
  // (HF module pattern with '*' wildcards, e.g. "layers.*.self_attn.q_proj", style); first match.
  std::vector<std::pair<std::string, TpStyle>> rules;
  int64_t num_kv_heads = 0;  // for head-aware shard sizes (0: unknown)
};

// The plan of a config.json: base_model_tp_plan when present, else the Transformers plan of its
// model_type (llama, mistral, qwen2, qwen3), plus the causal-LM class's lm_head rule.
// InvalidArgument for a tp_plan style DeepSpeed rejects (local_colwise, sequence_parallel, gather,
// ...), naming it.
absl::StatusOr<TpPlan> TpPlanOf(const nlohmann::json& hf_config);

// The style of a parameter (a state_dict name such as "model.layers.0.self_attn.q_proj.weight"
// or ".bias": a column-parallel bias is split, a row-parallel one replicated).
TpStyle StyleOf(const TpPlan& plan, const std::string& param_name);

// get_shard_size_list (§2.4): `total` rows cut over `tp` ranks, in whole KV-head groups for
// attention projections (name without mlp / lm_head / embed_out / gate_proj / up_proj /
// down_proj / w1 / w2 / w3, total divisible by num_kv_heads), else near-even (first ranks +1).
std::vector<int64_t> ShardSizes(int64_t total, int tp, const std::string& name,
                                int64_t num_kv_heads);

}  // namespace ucp::runtime
