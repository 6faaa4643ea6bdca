// Verify: checks a checkpoint folder without converting it and names every problem found, not
// just the first (`ucp verify`). What is checked depends on what the folder is:
//
//   DeepSpeed ZeRO tag folder (or its save root)
//     file    every recognised file opens as a torch.save zip and its records' CRC-32s and sizes
//     match files   the rank files dp_world_size implies exist (each missing one named), expert
//     files form
//             a full layer × expert grid
//     step    model files agree on global_steps, optimizer shards on their optimizer step
//     index   OpenCheckpoint's invariants (converters/deepspeed/checkpoint_index.h): world sizes,
//             stages, param sets and shapes agree across files, fragments lie inside their
//             partitions (a layout OpenCheckpoint does not support, Unimplemented, is a note, not a
//             problem)
//     cover   every parameter's fragments cover its numel exactly once (per EP rank for experts)
//     padding each rank's partition is its fragments plus the padding the layout implies
//   Universal Checkpoint folder (zero/<param>/*.pt) and ucp exports with a manifest
//     manifest every file ucp_manifest.json lists exists with its size and CRC-32; no unlisted
//     files file    every .pt opens and its CRC-32s match param   each parameter has fp32 / exp_avg
//     / exp_avg_sq of one shape, and step.pt everywhere or
//             nowhere, with one value
//     model   param_shapes of the model files name exactly the zero/ folders, with matching numel;
//             optimizer_state.pt has as many param groups as param_shapes
//
// A check that cannot be made is not passed silently: it is listed in `skipped` with the reason
// (a layout the index does not read, NVMe-offloaded state, a file verify does not know, a UCP
// whose model files have no param_shapes, a weights folder without a manifest), and the report is
// incomplete (`ucp verify` exits 3).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace ucp::converters::verify {

struct Problem {
  std::string
      check;  // "file", "files", "step", "index", "cover", "padding", "manifest", "param", "model"
  std::string file;  // path relative to the checked folder; empty when no single file is at fault
  std::string message;  // what is wrong, with the key or parameter name
};

// A check that could not be made, and why.
struct Skipped {
  std::string check;  // as Problem::check
  std::string file;   // relative to the checked folder; empty when not about one file
  std::string reason;
};

struct VerifyReport {
  std::string path;  // the folder checked (the tag folder for ZeRO)
  std::string kind;  // "zero", "universal" or "export"
  int files_checked = 0;
  int params_checked = 0;
  std::vector<std::string> notes;  // facts that are not problems ("no ucp_manifest.json")
  std::vector<Problem> problems;
  std::vector<Skipped> skipped;

  bool ok() const { return problems.empty(); }
  bool complete() const { return skipped.empty(); }  // every check was made
};

struct VerifyOptions {
  std::string tag;  // ZeRO save root: the tag folder to check instead of the one `latest` names
  bool check_crc = true;  // read every record of every file and check its CRC-32
};

// Checks `path`. Problems found in the checkpoint are in the report; the status is an error only
// when `path` is not a checkpoint ucp recognises (NotFound: missing, or no checkpoint files;
// InvalidArgument: a bad tag).
absl::StatusOr<VerifyReport> VerifyCheckpoint(const std::string& path,
                                              const VerifyOptions& options = {});

nlohmann::json ReportToJson(const VerifyReport& report);
// "<check>: <file>: <message>" per problem, "skipped: <check>: <file>: <reason>" per check not
// made, notes, then a summary line.
std::string ReportToText(const VerifyReport& report);

}  // namespace ucp::converters::verify
