// Loading a checkpoint into the runtime, through the toolkit's Sources (converters/sources): a
// DeepSpeed ZeRO folder at any stage and dp (read in place as a virtual UCP), a UCP folder, or
// weights (safetensors, .bin, HDF5). Every parameter's whole fp32 master and Adam moments are read
// one parameter at a time and each rank keeps its own partition of them (Engine::SetParam, which
// cuts with ucp::ShardLayout): the in-memory reshard, no file written. The optimizer param groups
// (membership, flat order, weight decay, steps) come from the checkpoint; the step counters, the
// LR scheduler's state and the client state from its model-states file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "runtime/checkpoint/hf_moe_weights.h"
#include "runtime/engine/engine.h"
#include "runtime/model/model.h"
#include "ucp/source.h"

namespace ucp::runtime {

struct LoadRequest {
  std::string path;               // a save folder, tag folder, UCP folder or weights file/folder
  std::string tag;                // a tag folder of a save folder instead of `latest`
  bool prefer_universal = false;  // checkpoint.load_universal: the UCP latest_universal names
  bool module_only = false;       // weights only: fresh optimizer, steps 0
};

struct OpenedCheckpoint {
  std::unique_ptr<ucp::Source> source;
  std::string description;         // "zero (ZeRO-2, dp 2) .../global_step5"
  std::vector<OptimGroup> groups;  // the checkpoint's param groups (empty when module_only)
  std::vector<double> group_lr;
  int64_t global_steps = 0, global_samples = 0, skipped_steps = 0;
  int64_t lr_last_batch_iteration = -1;
  // The client state keys, in the file's order (save_checkpoint's client_state).
  nlohmann::ordered_json client_state = nlohmann::ordered_json::object();
  // Frozen parameters and buffers the Source does not list (ZeRO-0/1 keep them only in the
  // model-states file's module), read from there: name → whole fp32 tensor.
  std::vector<std::pair<std::string, at::Tensor>> module_tensors;
  // Weights only: model parameters assembled from Hugging Face MoE names (hf_moe_weights.h).
  std::vector<std::pair<int, HfMoeRead>> hf_moe;
};

// Opens and checks the checkpoint against `model` (metadata only): InvalidArgument naming the
// first parameter that is missing, extra, or of another shape ("a checkpoint of another model").
absl::StatusOr<OpenedCheckpoint> OpenForModel(const LoadRequest& request, const Model& model);

// Reads every parameter (and, unless module_only, its optimizer state) into the engine.
absl::Status LoadInto(const OpenedCheckpoint& checkpoint, Engine& engine, bool module_only);

}  // namespace ucp::runtime
