// Ctrl-C and SIGTERM for the verbs that write (convert, reshard, export, zero-to-fp32). The first
// SIGINT or SIGTERM sets a cancellation flag that the executor reads between copy chunks: the run
// stops its workers, removes its staging folder (nothing appears at the output) and the verb
// prints one "error: interrupted ..." line and exits 128 + the signal (130 for SIGINT, 143 for
// SIGTERM). A second signal ends the process at once, as without a handler; like kill -9 it
// leaves the staging folder, unlocked, which the next run removes with a note.
#pragma once

#include <atomic>
#include <ostream>

#include "absl/status/status.h"
#include "cli/commands/command_output.h"

namespace ucp::cli {

// Installs the SIGINT / SIGTERM handlers (sigaction, SA_RESTART). Idempotent.
void InstallInterruptHandlers();
// The flag for ExecuteOptions::cancel; set by the first signal.
const std::atomic<bool>* CancelFlag();
// The signal that set the flag; 0 when none.
int InterruptSignal();

// Reports a failed run (command_output.h Fail: the "error:" line, and the JSON error document
// under --json) and returns its exit code: 128 + the signal for a run cancelled by one, else 1.
int RunFailed(const CommandOutput& output, const absl::Status& status);

}  // namespace ucp::cli
