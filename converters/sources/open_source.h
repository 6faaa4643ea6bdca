// OpenSource: any checkpoint path → a Source (ucp/source.h). SniffCheckpoint (sniff.h) decides
// what the path holds, and the opener of that kind reads it:
//   zero       a DeepSpeed tag folder, read in place as a virtual UCP (zero_source.h)
//   universal  a UCP folder (ucp/universal_source.h)
//   weights    safetensors / torch state_dict / HDF5 files or folders (ucp/weights_source.h)
// The CLI verbs and the Python binding open checkpoints only through this (reshard and convert
// need DeepSpeed's pickled trees, not a Source, and call SniffCheckpoint themselves).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "converters/sources/sniff.h"
#include "ucp/source.h"

namespace ucp::converters::sources {

struct OpenSourceOptions : SniffOptions {
  // A UCP as it is (ucp::UniversalOpenOptions::partial, and no manifest check): `ucp diff` turns
  // it on to report a missing parameter folder or state file as missing_in_a / missing_in_b.
  bool partial = false;
};

// SniffCheckpoint's errors, then the chosen opener's.
absl::StatusOr<std::unique_ptr<ucp::Source>> OpenSource(const std::string& path,
                                                        const OpenSourceOptions& options = {});
// Opens what SniffCheckpoint found.
absl::StatusOr<std::unique_ptr<ucp::Source>> OpenSniffed(const SniffedCheckpoint& sniffed,
                                                         const OpenSourceOptions& options = {});

}  // namespace ucp::converters::sources
