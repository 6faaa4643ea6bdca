// `ucp convert INPUT [OUTPUT]` and its alias executable `ucp-convert`, which accepts the flags of
// DeepSpeed's ds_to_universal.py (--input_folder, --output_folder, --num_extract_workers,
// --num_merge_workers, --keep_temp_folder, --no_strict, --inject_missing_state): converts a
// DeepSpeed ZeRO checkpoint into the Universal Checkpoint folder DeepSpeed itself writes
// (converters/pipelines/convert.h). --dry-run prints the plan (summary, or JSON with --json) and
// writes nothing. Progress (bytes, rate, ETA) is drawn on stderr only when it is a terminal.
#pragma once

#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ucp::cli {

struct ConvertCommandOptions {
  std::string input;   // save folder or tag folder (ds_to_universal: --input_folder)
  std::string output;  // UCP folder (--output_folder); empty: <save folder>/<tag>_universal
  std::string tag;
  int threads = 0;  // 0: --num_extract_workers when given, else every hardware thread
  std::string memory_limit = "256MiB";
  bool dry_run = false;
  bool json = false;
  bool force = false;
  bool no_strict = false;
  bool inject_missing_state = false;
  bool keep_temp_folder = false;  // accepted for ds_to_universal compatibility; no effect
  int num_extract_workers = 0;    // ds_to_universal's worker counts; used only as a thread count
  int num_merge_workers = 0;
  bool no_fsync = false;     // skip fsync (scratch output, tests)
  bool distributed = false;  // one rank of a torchrun / srun / mpirun job
  int nproc = 0;             // > 0: launch this many local ranks (main.cc, launch_ranks.h)
  bool progress = false;     // draw a progress line on `err` (main sets it when stderr is a TTY)
};

// Returns the process exit code: 0 ok, 1 error (one "error: ..." line on `err`).
int RunConvert(const ConvertCommandOptions& options, std::ostream& out, std::ostream& err);

}  // namespace ucp::cli
