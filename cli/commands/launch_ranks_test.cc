// The ranks' command line of `--nproc N` (launch_ranks.h); the launch itself is tested end to end
// in tests/dist/convert_dist_test.cc (Nproc*).
#include "cli/commands/launch_ranks.h"

#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ucp::cli {
namespace {

using Args = std::vector<std::string>;

TEST(RankArguments, DropsNprocAndAddsDistributedOnce) {
  EXPECT_EQ(RankArguments({"convert", "in", "out", "--nproc", "4"}),
            (Args{"convert", "in", "out", "--distributed"}));
  EXPECT_EQ(RankArguments({"export", "--nproc=2", "in", "--out", "o", "--distributed"}),
            (Args{"export", "in", "--out", "o", "--distributed"}));
  EXPECT_EQ(RankArguments({"reshard", "in", "--distributed", "--nproc", "3", "--dp", "2"}),
            (Args{"reshard", "in", "--distributed", "--dp", "2"}));
  EXPECT_EQ(RankArguments({"convert", "--nproc"}), (Args{"convert", "--distributed"}));
}

TEST(LaunchRanks, RefusesToNestUnderAnotherLauncher) {
  ::setenv("SLURM_PROCID", "0", 1);
  ::setenv("SLURM_NTASKS", "1", 1);
  std::ostringstream err;
  char arg0[] = "ucp";
  char* argv[] = {arg0, nullptr};
  EXPECT_EQ(LaunchRanks(2, "ucp convert", 1, argv, err), 2);
  ::unsetenv("SLURM_PROCID");
  ::unsetenv("SLURM_NTASKS");
  EXPECT_EQ(err.str(),
            "error: --nproc starts ranks itself; under srun (its rank variables are set) leave it "
            "out\n");
}

TEST(IsSecondaryRank, OnlyNonZeroRanksOfADistributedRun) {
  EXPECT_FALSE(IsSecondaryRank(true));
  ::setenv("RANK", "1", 1);
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", "29500", 1);
  EXPECT_TRUE(IsSecondaryRank(true));
  EXPECT_FALSE(IsSecondaryRank(false));
  ::setenv("RANK", "0", 1);
  EXPECT_FALSE(IsSecondaryRank(true));
  for (const char* name : {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) ::unsetenv(name);
}

}  // namespace
}  // namespace ucp::cli
