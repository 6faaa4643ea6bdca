#include "cli/commands/launch_ranks.h"

#include "absl/strings/match.h"
#include "cli/commands/command_output.h"
#include "converters/launch/launcher.h"
#include "converters/launch/rank_env.h"

namespace ucp::cli {

namespace launch = converters::launch;

std::vector<std::string> RankArguments(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  bool distributed = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") {
      ++i;  // and its value
      continue;
    }
    if (absl::StartsWith(args[i], "--nproc=")) continue;
    distributed = distributed || args[i] == "--distributed";
    out.push_back(args[i]);
  }
  if (!distributed) out.push_back("--distributed");
  return out;
}

int LaunchRanks(int nproc, const std::string& verb, int argc, char** argv, std::ostream& err) {
  // Under torchrun / srun / mpirun every rank would start N more: a mistake, not a bigger job.
  absl::StatusOr<launch::RankEnv> outer = launch::ReadRankEnv();
  if (outer.ok() && outer->launched) {
    err << "error: --nproc starts ranks itself; under " << outer->launcher
        << " (its rank variables are set) leave it out\n";
    return kExitUsage;
  }
  launch::LaunchOptions options;
  options.nproc = nproc;
  options.name = verb;
  options.log = &err;
  // /proc/self/exe is this very binary even when argv[0] is a name on PATH or a symlink
  // (ucp-convert behaves by its name: argv[0] is kept).
  options.executable = "/proc/self/exe";
  options.argv.push_back(argc > 0 ? argv[0] : "ucp");
  const std::vector<std::string> rest =
      RankArguments(std::vector<std::string>(argv + (argc > 0 ? 1 : 0), argv + argc));
  options.argv.insert(options.argv.end(), rest.begin(), rest.end());
  // A conversion's ranks stop within a second of another's failure (the coordination tells
  // them); the grace is for a rank stuck in I/O.
  options.grace_seconds = 10;
  absl::StatusOr<launch::LaunchResult> result = launch::LaunchLocal(options);
  if (!result.ok()) {
    err << "error: " << result.status().message() << "\n";
    return kExitFailure;
  }
  if (result->exit_code != 0 && !result->message.empty()) {
    err << "error: " << result->message << "\n";
  }
  return result->exit_code;
}

bool IsSecondaryRank(bool distributed) {
  if (!distributed) return false;
  absl::StatusOr<launch::RankEnv> env = launch::ReadRankEnv();
  return env.ok() && env->world_size > 1 && env->rank != 0;
}

}  // namespace ucp::cli
