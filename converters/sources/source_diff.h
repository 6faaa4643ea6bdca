// DiffSources: compares two checkpoints of any kinds (ZeRO folder, UCP, weights export) parameter
// by parameter and state by state, as `ucp diff` and the Python binding's Checkpoint.diff report
// it. States are compared where both sides have them; a weights-only side (safetensors / .bin /
// HDF5 export) has one tensor per parameter, compared with the other side's fp32 (master) state,
// and its entries say so (weights_only). Values of different dtypes are compared as doubles. Reads
// one parameter state at a time.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "ucp/source.h"

namespace ucp::converters::sources {

enum class DiffStatus : uint8_t {
  kEqual,            // bitwise equal (same dtype and shape)
  kWithinTolerance,  // max |a - b| <= atol, not bitwise equal
  kDifferent,        // max |a - b| > atol
  kShapeMismatch,
  kMissingInA,
  kMissingInB,
  kStepDiffers,  // the optimizer step recorded for the parameter differs
};
const char* DiffStatusName(DiffStatus status);

struct DiffEntry {
  std::string name;
  std::string state;  // "fp32", "exp_avg", "exp_avg_sq", "step", or "" for a missing parameter
  DiffStatus status = DiffStatus::kEqual;
  double max_abs_diff = 0;
  std::string detail;  // shapes / dtypes / step values when they differ
  // Compared values (kWithinTolerance, kDifferent): max |a-b| / max(|a|, |b|) over the elements,
  // the elements whose values differ by more than atol (or NaN on one side only), of `numel`.
  double max_rel_diff = 0;
  int64_t num_different = 0;
  int64_t numel = 0;
  bool weights_only = false;  // a weights-only side's stored weight compared with fp32
};

struct DiffOptions {
  double atol = 0;  // tolerance for kWithinTolerance
  std::vector<ucp::ParamState> states = {ucp::ParamState::kFp32, ucp::ParamState::kExpAvg,
                                         ucp::ParamState::kExpAvgSq};
  bool compare_steps = true;
};

struct DiffReport {
  std::vector<DiffEntry> entries;  // one per compared (parameter, state) and per missing parameter
  int params_compared = 0;
  int states_compared = 0;
  bool weights_only = false;  // a side is a weights export: only fp32 (its weights) compared
  bool equal() const;         // every entry kEqual or kWithinTolerance
  // Entries per status, by DiffStatusName ("equal": 40, "different": 2, ...; zeros included).
  std::map<std::string, int> Counts() const;
  // {"equal", "weights_only", "params_compared", "states_compared", "counts", "entries"}
  // (docs/json.md, `ucp diff --json` without its envelope).
  nlohmann::json ToJson() const;
};

// Errors: reading a state fails (the reader's error naming its file).
absl::StatusOr<DiffReport> DiffSources(const ucp::Source& a, const ucp::Source& b,
                                       const DiffOptions& options = {});

}  // namespace ucp::converters::sources
