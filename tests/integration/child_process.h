// Running the `ucp` binary as a child process in tests that signal or kill it mid-write: the
// executor's test hook (converters/execute/executor.h: UCP_TEST_PAUSE_AFTER_OPS and
// UCP_TEST_PAUSE_READY) makes it stop after N copy chunks and say so through a file, so the
// signal always lands while the output is being written.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace ucp::testing {

// The `ucp` executable built beside the tests.
std::string UcpBinary();

// Starts `ucp args...` with stdout and stderr sent to `stdout_path` / `stderr_path` and, when
// pause_after > 0, the test hook set to pause after that many copy chunks and create `ready`.
// Returns the child's pid (-1 if fork failed).
pid_t SpawnUcp(const std::vector<std::string>& args, const std::string& stdout_path,
               const std::string& stderr_path, int pause_after, const std::string& ready);

// Waits up to `seconds` for `path` to exist.
bool WaitForFile(const std::string& path, int seconds);

// waitpid: the exit code (0..255), or -N when signal N ended the process.
int WaitForExit(pid_t pid);

}  // namespace ucp::testing
