// From the configs to the engine's inputs: the model of a config.json, DeepSpeed's default param
// groups, the engine settings of a DeepSpeed config.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/config/ds_config.h"
#include "runtime/config/model_config.h"
#include "runtime/engine/engine.h"
#include "runtime/model/model.h"

namespace ucp::runtime {

// The model of rank `rank` of `world` ranks: a mixture-of-experts config.json needs AutoEP
// (expert_parallel.enabled) and this rank holds its EP rank's experts.
absl::StatusOr<std::unique_ptr<Model>> MakeModel(const ModelConfig& config,
                                                 const TrainConfig& train, int world, int rank);
// Ulysses (§3.2-3.3) splits each TP rank's attention heads over the `sp` SP ranks: the query
// heads must divide evenly and the KV heads divide evenly or divide `sp`; an error names the
// rank's head counts otherwise. A dense decoder's heads per TP rank are its AutoTP partition's
// (train.tensor_parallel: preset_model / partition_config, else its tp_plan or the heuristic).
absl::Status CheckSpHeads(const ModelConfig& config, const TrainConfig& train, int tp, int sp);
// expert_parallel.autoep_size for the model (1 for dense models).
int AutoEpSize(const ModelConfig& config, const TrainConfig& train);
// Two groups as the fixtures' client optimizer has them: "decay" (>= 2-D weights, the optimizer's
// weight_decay) and "no_decay" (biases and norms, 0); named_parameters order inside each.
std::vector<OptimGroup> DefaultGroups(const Model& model, double weight_decay);
absl::StatusOr<EngineConfig> MakeEngineConfig(const TrainConfig& config);
int64_t TrainableCount(const Model& model);

}  // namespace ucp::runtime
