// SniffCheckpoint: what a checkpoint path holds, decided once for every verb (inspect, diff,
// export, zero-to-fp32, verify, convert, reshard, Python ucp.open) and for OpenSource. Only
// names, file types and the small `latest` / `latest_universal` / index files are read; nothing
// is parsed. Rules, in order, for a folder D:
//   1. D/zero/ is a folder                        → universal D (a UCP folder)
//   2. options.tag: D/<tag> (or D itself when its name is the tag), sniffed by these rules,
//      must be a ZeRO tag folder or a UCP folder
//   3. D/latest and D/latest_universal            → zero via latest; universal when
//                                                   options.prefer_universal
//   4. D/latest                                   → zero: the tag folder it names
//   5. D/latest_universal                         → universal: the UCP folder it names
//   6. DeepSpeed checkpoint files in D            → zero: D is the tag folder
//   7. model.safetensors[.index.json], pytorch_model.bin[.index.json], model.h5 → weights
// A file is weights (safetensors, torch state_dict, HDF5) by its first bytes; one named like a
// DeepSpeed checkpoint file is refused (pass its folder). Anything that is neither a regular file
// nor a folder (after following links: a FIFO, a socket, a device) is refused with its name, and
// so is a `latest` or `latest_universal` that is not a regular file: nothing here can block.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "ucp/source.h"

namespace ucp::converters::sources {

struct SniffOptions {
  std::string tag;                // a tag folder of a save folder, instead of `latest`
  bool prefer_universal = false;  // rule 3: the UCP that latest_universal names
};

struct SniffedCheckpoint {
  ucp::SourceKind kind = ucp::SourceKind::kZero;
  // zero: the tag folder; universal: the UCP folder (zero/ inside); weights: the path given.
  std::string path;
  std::string root;  // zero / universal: the save folder holding the tag folder ("" if unknown)
  std::string tag;   // zero / universal: the tag folder's name
  std::string why;   // for humans: "latest names global_step5", "zero/ inside", ...

  bool is_zero() const { return kind == ucp::SourceKind::kZero; }
  bool is_universal() const { return kind == ucp::SourceKind::kUniversal; }
  bool is_weights() const { return !is_zero() && !is_universal(); }
};

// NotFound: the path (or a tag, or the folder `latest` / `latest_universal` names) is missing.
// InvalidArgument: not a regular file or folder, a bad tag name, a DeepSpeed shard file given
// instead of its folder, or "not a checkpoint: <path> holds ... found: <entries>".
absl::StatusOr<SniffedCheckpoint> SniffCheckpoint(const std::string& path,
                                                  const SniffOptions& options = {});

}  // namespace ucp::converters::sources
