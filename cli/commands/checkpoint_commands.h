// Whole-checkpoint verbs over converters/sources (any kind: ZeRO folder, UCP, weights export):
//   ucp inspect DIR   kind, stage, wrapper, topology, step, param groups, a parameter table, sizes
//   ucp diff A B      per parameter and state: equal / max abs and relative diff and the count of
//                     differing elements / missing; exit 0 only if equal
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace ucp::cli {

struct InspectCheckpointOptions {
  std::string path;
  std::string tag;
  bool json = false;
  bool universal = false;  // a save folder with both: open the UCP
  int max_rows = 0;        // parameter rows shown (0 = all)
};
// 0 ok, 1 error (one "error: ..." line on `err`; under --json also {"error": ...} on `out`).
int RunInspectCheckpoint(const InspectCheckpointOptions& options, std::ostream& out,
                         std::ostream& err);

struct DiffCommandOptions {
  std::string a, b;
  std::string tag_a, tag_b;
  double atol = 0;
  std::vector<std::string> states;  // empty: fp32, exp_avg, exp_avg_sq
  bool json = false;
  bool all = false;      // list equal entries too
  bool summary = false;  // header and counts only
};
// The names --states takes: "fp32", "exp_avg", "exp_avg_sq".
std::vector<absl::string_view> DiffStateNames();
// 0 equal (within atol), 1 different or an error, 2 a bad --states value. A file missing from a
// UCP (even one its ucp_manifest.json lists) is reported as missing_in_a / missing_in_b.
int RunDiff(const DiffCommandOptions& options, std::ostream& out, std::ostream& err);

}  // namespace ucp::cli
