// `ucp convert | reshard | export --distributed --nproc N`: this command run as N local ranks by
// the launcher `ucp train --nproc` uses (converters/launch/launcher.h): 127.0.0.1, a free port,
// torchrun's variables, SIGINT / SIGTERM / SIGHUP forwarded, the first failed rank named, every
// rank reaped. The ranks run the same command line without --nproc (and with --distributed).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace ucp::cli {

// The ranks' command line: `args` (argv[1..]) without "--nproc N" / "--nproc=N", with
// "--distributed" added when it is not there.
std::vector<std::string> RankArguments(const std::vector<std::string>& args);

// Runs `argv` (this process's, argv[0] included) as `nproc` ranks and returns the exit code: 0,
// 1 (a rank failed: one "error:" line naming it on `err`), 2 (--nproc under another launcher),
// 128 + the signal when interrupted. `verb` names the launcher's own lines ("ucp convert").
int LaunchRanks(int nproc, const std::string& verb, int argc, char** argv, std::ostream& err);

// True in rank 1, 2, ... of a --distributed run with more than one rank: its result is rank 0's,
// so it prints none (one "wrote" line, or one JSON document, per run).
bool IsSecondaryRank(bool distributed);

}  // namespace ucp::cli
