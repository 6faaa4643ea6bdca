// SaveCheckpoint: the runtime's save_checkpoint. The engine's state becomes a MemoryCheckpoint
// (converters/sinks/zero/memory_input.h) and the one ZeRO sink writes the files DeepSpeed writes
// at this stage and dp (no file is written here by hand). Atomic: the tag folder is written in a
// staging folder inside the save folder, renamed into place, and only then is `latest` replaced
// (write + rename), so a save killed at any moment leaves the previous checkpoint and `latest`
// loadable.
//
// Collective: every rank calls it; rank 0 gathers the partitions (the fp32 masters and the Adam
// moments: three fp32 copies of the model, held on rank 0 for the length of the save) and
// writes; the others wait at a barrier.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "runtime/engine/engine.h"

namespace ucp::runtime {

struct SaveRequest {
  std::string save_dir;
  std::string tag;  // "global_step<N>" by default (the caller decides)
  int64_t global_steps = 0, global_samples = 0, skipped_steps = 0;
  int64_t lr_last_batch_iteration = -1;  // the scheduler's state ({'last_batch_iteration': n})
  std::vector<double> group_lr;          // each param group's current lr
  nlohmann::json ds_config;              // written as ds_config
  nlohmann::ordered_json client_state = nlohmann::ordered_json::object();  // {"iteration": N}
  // AutoEP: ds_autoep_layers as an autoep_size-1 run writes it (the sink rewrites it per rank at
  // the engine's autoep_size) and num_experts per MoE layer; empty for dense models.
  nlohmann::ordered_json autoep_layers = nlohmann::ordered_json::array();
  int autoep_size = 1;
  bool use_data_before_expert_parallelism = false;  // the EP / expert-DP layout (§1.6)
  bool fsync = true;
};

absl::Status SaveCheckpoint(Engine& engine, const SaveRequest& request);

}  // namespace ucp::runtime
