// AutoTP's partitioning of a model's parameters (deepspeed-runtime.md §2.2-2.6): which source
// decides (tensor_parallel.partition_config / preset_model first, else the Hugging Face tp_plan,
// else the legacy heuristic), and, for each parameter, its style and every TP rank's widths,
// sub-parameter splits included (a `shape` spec: each sub-parameter cut with DeepSpeed's
// head-aware sizes, a rank holding its pieces concatenated, e.g. [gate_r ; up_r]). The model
// slices by it (ModelParam pieces) and the save publishes it (universal_checkpoint_info).
// Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "runtime/config/tp_plan.h"
#include "runtime/config/tp_specs.h"

namespace ucp::runtime {

// A parameter as the model registers it: state_dict name and whole shape.
struct TpParamInfo {
  std::string name;
  std::vector<int64_t> shape;
};

struct TpParamSplit {
  TpStyle style = TpStyle::kReplicated;
  bool row = false;  // a row-parallel weight (its output all-reduced; published as row-parallel)
  int dim = -1;      // the weight dim this rank's pieces are cut along (-1: replicated)
  // Per sub-parameter (one for a plain split), every rank's width along the partition dim of the
  // logical view; elements = width * inner.
  std::vector<std::vector<int64_t>> widths;
  int64_t outer = 1, inner = 1;  // logical dims before / after the partition dim (weight dim 0)
  // A `shape` spec: DeepSpeed's parameter_with_sub_params entry (the partition dim's entry
  // replaced by the sub-parameter sizes) and its partition dim.
  bool sub_params = false;
  nlohmann::json published_shape;
  nlohmann::json bias_published_shape;  // the weight's: its bias's entry (the output dims)
  int partition_dim = 0;

  bool sharded() const { return dim >= 0; }
  // Rank r's pieces along `dim` as (begin, length) in the whole tensor, in the order the rank
  // concatenates them; adjacent pieces merged (a plain split is one piece).
  std::vector<std::pair<int64_t, int64_t>> Pieces(int rank) const;
  int64_t Width(int rank) const;  // sum of the piece lengths
};

struct TpPartition {
  std::string source;                // "partition_config", "hf_tp_plan" or "heuristic"
  std::vector<TpParamSplit> splits;  // one per parameter, in order
};

// The KV-head count of a config.json for head-aware shard sizes (§2.4): the first of
// multi_query_group_num, num_kv_heads, num_key_value_heads, num_attention_heads, n_heads,
// attention_heads; 0 when none.
int64_t TpNumKvHeads(const nlohmann::json& hf_config);

// The partition of `params` over `tp` ranks. Linears are the 2-D ".weight" parameters other than
// embeddings (and their ".bias"); a spec applies to a linear by its "<module>.weight" name, and
// grad_allreduce by the parameter's own name (DeepSpeed's hook). The HF tp_plan path is taken
// when the config carries no config-driven keys; a config.json whose base_model_tp_plan is null
// or {} is a model without a tp_plan (the heuristic). InvalidArgument / Unimplemented, naming the
// parameter and the spec, for: strict_mode and an unmatched linear, an embedding a non-skip spec
// matches, a shape that does not fit the weight (DeepSpeed's _infer_subparam_logical_shapes
// checks), a preset none of whose patterns matches a parameter.
absl::StatusOr<TpPartition> PartitionForTp(const TpPartitionSettings& settings,
                                           const nlohmann::json& hf_config,
                                           const std::vector<TpParamInfo>& params, int tp);

}  // namespace ucp::runtime
