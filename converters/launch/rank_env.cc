#include "converters/launch/rank_env.h"

#include <cstdlib>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "formats/base/status.h"

namespace ucp::converters::launch {
namespace {

// A typo guard ("WORLD_SIZE=655360"), far above any job's rank count.
constexpr int kMaxWorld = 65536;

struct Names {
  const char* launcher;
  const char* rank;
  const char* world;
  const char* local;
};
constexpr Names kLaunchers[] = {
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
    {"srun", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
    {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
};

absl::StatusOr<int> ParseInt(const char* name, const char* value) {
  int parsed = 0;
  if (!absl::SimpleAtoi(value, &parsed)) {
    return absl::InvalidArgumentError(absl::StrCat(name, "=\"", value, "\" is not an integer"));
  }
  return parsed;
}

absl::StatusOr<int> ParsePort(const char* name, const char* value) {
  UCP_ASSIGN_OR_RETURN(const int port, ParseInt(name, value));
  if (port < 1 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(name, "=", port, " is not a port (1..65535)"));
  }
  return port;
}

const char* Getenv(const char* name) { return std::getenv(name); }

}  // namespace

absl::StatusOr<RankEnv> ReadRankEnv(const RankEnvOptions& options,
                                    const std::function<const char*(const char*)>& getenv_fn) {
  RankEnv env;
  // The launcher whose variables are present: the first with any of its three set.
  const Names* names = nullptr;
  for (const Names& n : kLaunchers) {
    if (getenv_fn(n.rank) != nullptr || getenv_fn(n.world) != nullptr ||
        getenv_fn(n.local) != nullptr) {
      names = &n;
      break;
    }
  }
  const char* addr = getenv_fn("MASTER_ADDR");
  const char* port = getenv_fn("MASTER_PORT");
  if (names == nullptr) {
    // A single process; the master address still applies when given (a one-rank group).
    if (addr != nullptr) env.master_addr = addr;
    if (port != nullptr) {
      UCP_ASSIGN_OR_RETURN(env.master_port, ParsePort("MASTER_PORT", port));
    }
    return env;
  }
  env.launched = true;
  env.launcher = names->launcher;
  const char* rank = getenv_fn(names->rank);
  const char* world = getenv_fn(names->world);
  const char* local = getenv_fn(names->local);
  if (rank == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(world != nullptr ? names->world : names->local,
                                                   " is set but ", names->rank, " is not"));
  }
  if (world == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(names->rank, " is set but ", names->world, " is not"));
  }
  UCP_ASSIGN_OR_RETURN(env.rank, ParseInt(names->rank, rank));
  UCP_ASSIGN_OR_RETURN(env.world_size, ParseInt(names->world, world));
  if (env.world_size < 1 || env.world_size > kMaxWorld) {
    return absl::InvalidArgumentError(absl::StrCat(names->world, "=", env.world_size,
                                                   " is not a world size (1..", kMaxWorld, ")"));
  }
  if (env.rank < 0 || env.rank >= env.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(names->rank, "=", env.rank, " is outside 0..",
                                                   env.world_size - 1, " (", names->world, "=",
                                                   env.world_size, ")"));
  }
  if (local == nullptr && env.world_size > 1 && options.require_local_rank) {
    return absl::InvalidArgumentError(
        absl::StrCat(names->rank, " is set but ", names->local, " is not"));
  }
  if (local != nullptr) {
    UCP_ASSIGN_OR_RETURN(env.local_rank, ParseInt(names->local, local));
  }
  if (env.local_rank < 0 || env.local_rank >= env.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(names->local, "=", env.local_rank, " is outside 0..", env.world_size - 1));
  }
  // One rank needs no rendezvous: the address is read when given, as without a launcher.
  if ((addr == nullptr || *addr == '\0') && env.world_size > 1) {
    return absl::InvalidArgumentError(absl::StrCat(names->rank, " is set but MASTER_ADDR is not"));
  }
  if (addr != nullptr) env.master_addr = addr;
  if (port == nullptr && env.world_size > 1) {
    return absl::InvalidArgumentError(absl::StrCat(names->rank, " is set but MASTER_PORT is not"));
  }
  if (port != nullptr) {
    UCP_ASSIGN_OR_RETURN(env.master_port, ParsePort("MASTER_PORT", port));
  }
  return env;
}

absl::StatusOr<RankEnv> ReadRankEnv(const RankEnvOptions& options) {
  return ReadRankEnv(options, Getenv);
}

absl::StatusOr<int> CoordinatorPort(const RankEnv& env,
                                    const std::function<const char*(const char*)>& getenv_fn) {
  if (const char* own = getenv_fn("UCP_DIST_PORT"); own != nullptr) {
    return ParsePort("UCP_DIST_PORT", own);
  }
  if (env.master_port == 0) return absl::InvalidArgumentError("MASTER_PORT is not set");
  if (env.launcher == "torchrun" && getenv_fn("TORCHELASTIC_RUN_ID") != nullptr) {
    if (env.master_port == 65535) {
      return absl::InvalidArgumentError(
          "MASTER_PORT=65535 under torchrun leaves no port for ucp (MASTER_PORT + 1); set "
          "UCP_DIST_PORT");
    }
    return env.master_port + 1;
  }
  return env.master_port;
}

absl::StatusOr<int> CoordinatorPort(const RankEnv& env) { return CoordinatorPort(env, Getenv); }

const std::vector<std::string>& RankEnvVariables() {
  static const auto* names = [] {
    auto* v = new std::vector<std::string>{"MASTER_ADDR", "MASTER_PORT", "UCP_DIST_PORT",
                                           "TORCHELASTIC_RUN_ID", "LOCAL_WORLD_SIZE"};
    for (const Names& n : kLaunchers) v->insert(v->end(), {n.rank, n.world, n.local});
    return v;
  }();
  return *names;
}

}  // namespace ucp::converters::launch
