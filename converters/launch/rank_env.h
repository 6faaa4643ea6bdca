// The rank environment a launcher leaves to a process: the one reader of it, for `ucp train` and
// for `ucp convert | reshard | export --distributed` alike.
//
// Launchers, first found in this order:
//   torchrun, LaunchLocal, plain variables: RANK, WORLD_SIZE, LOCAL_RANK
//   Slurm srun:                             SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID
//   Open MPI mpirun:                        OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK
// MASTER_ADDR and MASTER_PORT name rank 0's host and port; required when the world has more than
// one rank (srun and mpirun do not set them: export them to the tasks), read when set otherwise.
// Without any rank variable the process is a single rank (launched false).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ucp::converters::launch {

struct RankEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  // True when a rank variable of any launcher is present.
  bool launched = false;
  // "torchrun" (RANK...), "srun", "mpirun", or "" when not launched.
  std::string launcher;
};

struct RankEnvOptions {
  // Require the local rank when the world has more than one rank: ranks sharing a node would all
  // pick device 0 without it (training). A conversion has no devices and takes 0.
  bool require_local_rank = false;
};

// Validates integers, 0 <= rank < world <= 65536, 0 <= local rank < world and ports 1..65535;
// InvalidArgument errors name the variable ("SLURM_PROCID=4 is outside 0..3").
absl::StatusOr<RankEnv> ReadRankEnv(const RankEnvOptions& options,
                                    const std::function<const char*(const char*)>& getenv_fn);
absl::StatusOr<RankEnv> ReadRankEnv(const RankEnvOptions& options = {});

// The port rank 0 of a conversion listens on (its own TCP star, converters/execute/rank_group.h):
// UCP_DIST_PORT when set, else MASTER_PORT + 1 under torchrun's elastic agent
// (TORCHELASTIC_RUN_ID set: the agent's store holds MASTER_PORT), else MASTER_PORT.
// InvalidArgument naming the variable for a missing or malformed port.
absl::StatusOr<int> CoordinatorPort(const RankEnv& env,
                                    const std::function<const char*(const char*)>& getenv_fn);
absl::StatusOr<int> CoordinatorPort(const RankEnv& env);

// Every variable ReadRankEnv and CoordinatorPort read: a launcher that places its ranks itself
// removes them from what the ranks inherit, so that nothing of an enclosing launch leaks in.
const std::vector<std::string>& RankEnvVariables();

}  // namespace ucp::converters::launch
