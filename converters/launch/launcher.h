// The local multi-process launcher behind `ucp train --nproc N` and `ucp convert | reshard |
// export --distributed --nproc N` (torch-free, POSIX; what a rank reads back is rank_env.h).
// It lives below the runtime so that the toolkit, which must not link LibTorch, has it too.
//
// LaunchLocal starts N copies of one command (fork + execve, no shell), each with torchrun-style
// variables, and supervises them: the first rank that fails ends the run (the others get a grace
// period, then SIGTERM, then SIGKILL), SIGINT/SIGTERM/SIGHUP sent to the launcher are forwarded,
// and every child is reaped before it returns.
//
// Each rank runs in its own process group (setpgid), so that a terminal's Ctrl-C reaches a rank
// once (forwarded by the launcher), not twice (tty + forward: a rank that treats a second SIGINT
// as "stop now" would skip its checkpoint), and so that signals reach a rank's own children (data
// loader workers, the commands of a shell script) too. A rank that reads the terminal therefore
// stops with SIGTTIN; training does not read stdin.
#pragma once

#include <iostream>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ucp::converters::launch {

struct LaunchOptions {
  int nproc = 1;
  // argv[0] is the executable path, run as-is (no PATH search) in every rank, unless
  // `executable` is given: then that file runs, with argv[0] as its argv[0] (a binary that
  // behaves by its name, `ucp-convert`, reached through /proc/self/exe).
  std::vector<std::string> argv;
  std::string executable;
  std::string master_addr = "127.0.0.1";
  // 0: pick a free port (FreeLocalPort).
  int master_port = 0;
  // After the first failure (or interrupt), how long the other ranks get to exit on their own
  // before SIGTERM; SIGKILL follows 5 s after SIGTERM.
  double grace_seconds = 10;
  // The launcher's own lines ("ucp train: rank 2 was killed by signal 9 (SIGKILL)"), each
  // starting with `name`.
  std::ostream* log = &std::cerr;
  std::string name = "ucp";
  // Set to 1 in every rank: how a command that launches itself knows it is a rank already.
  std::string launched_variable = "UCP_LAUNCHED";
};

struct LaunchResult {
  // 0 when every rank exited 0; 128 + the signal when the launcher was interrupted (130 SIGINT,
  // 143 SIGTERM, 129 SIGHUP); else 1.
  int exit_code = 0;
  int first_failed_rank = -1;
  // Empty on success; else names the first failed rank ("rank 2 exited with code 1").
  std::string message;
};

// Starts options.nproc children, each with RANK=r, LOCAL_RANK=r, WORLD_SIZE=n,
// LOCAL_WORLD_SIZE=n, MASTER_ADDR, MASTER_PORT and <launched_variable>=1 added to the inherited
// environment, less every variable of rank_env.h's RankEnvVariables() (an enclosing srun's or
// torchrun's), and waits for all of them. When several ranks are found ended at once, a rank
// killed by a signal is named before ranks that exited non-zero (those usually exit because it
// died). A second interrupt skips the rest of the grace period.
// Never hangs once a failure happened: every wait is bounded. A child gets
// prctl(PR_SET_PDEATHSIG, SIGTERM), so that it does not outlive a launcher killed by SIGKILL (the
// death signal follows the thread that called LaunchLocal: call it from a thread that lives as
// long as the run). One LaunchLocal at a time per process (it owns the signal handlers while it
// runs and restores the previous ones).
// Errors: InvalidArgument (nproc < 1, empty argv, bad port), NotFound/PermissionDenied (argv[0]
// cannot be executed; ranks already started are killed and reaped), FailedPrecondition (another
// LaunchLocal is running), Unavailable (no free port, fork failed).
absl::StatusOr<LaunchResult> LaunchLocal(const LaunchOptions& options);

// A TCP port of 127.0.0.1 that was free a moment ago (bind to port 0, read it back, close); 0 on
// failure. Racy by nature: another process may take it before the master binds it.
int FreeLocalPort();

}  // namespace ucp::converters::launch
