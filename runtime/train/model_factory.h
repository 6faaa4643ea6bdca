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

absl::StatusOr<std::unique_ptr<Model>> MakeModel(const ModelConfig& config, Precision precision);
// Two groups as the fixtures' client optimizer has them: "decay" (>= 2-D weights, the optimizer's
// weight_decay) and "no_decay" (biases and norms, 0); named_parameters order inside each.
std::vector<OptimGroup> DefaultGroups(const Model& model, double weight_decay);
absl::StatusOr<EngineConfig> MakeEngineConfig(const TrainConfig& config);
int64_t TrainableCount(const Model& model);

}  // namespace ucp::runtime
