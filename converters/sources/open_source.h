// OpenSource: any checkpoint path → a Source (ucp/source.h). What the path holds decides:
//   a UCP folder (zero/ inside, or a save folder whose latest_universal names one)  → universal
//   a DeepSpeed save or tag folder (`latest`, *_model_states.pt, *_optim_states.pt) → zero
//   a weights file or folder (safetensors, torch state_dict, HDF5; HF index files)  → weights
// A save folder holding both `latest` and `latest_universal` opens the ZeRO tag unless
// options.prefer_universal is set. The CLI verbs (inspect, diff, export, reshard) and the Python
// binding open checkpoints only through this.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "ucp/source.h"

namespace ucp::converters::sources {

struct OpenSourceOptions {
  std::string tag;               // ZeRO: the tag folder instead of `latest`
  bool prefer_universal = false; // a save folder with both: open the UCP
  // UCP: refuse a folder whose ucp_manifest.json lists a file that is missing or of another size.
  // `ucp diff` turns it off to report what is missing instead (missing_in_a / missing_in_b).
  bool check_manifest = true;
};

// NotFound naming the path when it does not exist; InvalidArgument "not a checkpoint: ..." listing
// what the folder holds when nothing matches; otherwise the chosen opener's errors.
absl::StatusOr<std::unique_ptr<store::Source>> OpenSource(const std::string& path,
                                                          const OpenSourceOptions& options = {});

}  // namespace ucp::converters::sources
