// A Universal Checkpoint folder (docs/ucp.md; DeepSpeed's layout) as a Source: one parameter per
// zero/<param>/ folder, each state the tensor of its .pt file (a raw tensor or the 'param' entry of
// DeepSpeed's dict; vocabulary views cover their first rows only). Frozen parameters, buffers and
// tied aliases come from the model-states files the folder keeps (ZeRO-1/2: `module`; ZeRO-3:
// every rank's `frozen_param_fragments`). Parameters are listed in `param_shapes` order.
// The Source presents exactly what the model-states file declares (param_shapes, frozen
// parameters, buffers): a missing or undeclared zero/<param>/ folder, a declared folder without
// fp32.pt, a frozen parameter or buffer without its tensor are DataLoss naming it. A UCP without a
// model-states file or without param_shapes (ZeRO-0) lists its zero/ folders by name.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "ucp/source.h"

namespace ucp {

struct UniversalOpenOptions {
  // Check ucp_manifest.json's file sizes (when the folder has one; DeepSpeed's own UCPs do not).
  bool check_manifest_sizes = true;
  // The folders and state files that are there, even where the model-states file declares more
  // or fewer (a missing zero/<param>/ or fp32.pt is then no error; info.extra lists the names as
  // "params_missing" / "params_undeclared"): for `ucp diff`, which reports what one side lacks as
  // missing_in_a / missing_in_b.
  bool partial = false;
};

// `dir` is the UCP folder (a save folder's `latest_universal` is followed by SniffCheckpoint,
// converters/sources/sniff.h).
// NotFound (no zero/ folder), DataLoss (a state file that is not a tensor or dict with 'param',
// shapes that disagree across states, a manifest size mismatch), and the readers' errors, each
// naming its file.
absl::StatusOr<std::unique_ptr<Source>> OpenUniversalSource(
    const std::string& dir, const UniversalOpenOptions& options = {});

}  // namespace ucp
