// `ucp reshard SRC --dp N [--autoep-size K] [--zero-stage S] [--tag T] --out DIR`: writes the
// DeepSpeed checkpoint (DIR/latest, DIR/<tag>/) that DeepSpeed saves after loading SRC at that
// topology (converters/pipelines/reshard.h, docs/reshard.md). SRC is a UCP folder or a ZeRO save /
// tag folder read directly. --dry-run prints the plan and writes nothing.
#pragma once

#include <ostream>
#include <string>

#include "absl/strings/string_view.h"

namespace ucp::cli {

// The values --zero-stage takes (the planner says which changes DeepSpeed can load).
inline constexpr absl::string_view kZeroStages[] = {"0", "1", "2", "3"};

struct ReshardCommandOptions {
  std::string input;
  std::string output;
  std::string input_tag;  // ZeRO input: tag to read instead of `latest`
  std::string tag;        // output tag; empty: global_step<global_steps>
  int dp = 0;
  int tp = 0;  // 0: keep
  int autoep_size = 0;
  int zero_stage = -1;
  int threads = 0;
  std::string memory_limit = "256MiB";
  bool dry_run = false;
  bool json = false;
  bool force = false;
  bool no_fsync = false;
  bool distributed = false;  // one rank of a torchrun / srun / mpirun job
  int nproc = 0;             // > 0: launch this many local ranks (main.cc, launch_ranks.h)
  bool progress = false;     // draw a progress line on `err` (main sets it when stderr is a TTY)
};

// Returns the process exit code: 0 ok, 1 error, 2 usage error (an option, or an infeasible or
// absurd target, refused before anything is read beyond the input's metadata), 130 / 143 when
// interrupted by SIGINT / SIGTERM (cli/commands/interrupt.h); one "error: ..." line on `err`.
int RunReshard(const ReshardCommandOptions& options, std::ostream& out, std::ostream& err);

}  // namespace ucp::cli
