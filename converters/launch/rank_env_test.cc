// ReadRankEnv and CoordinatorPort (rank_env.h) over fixed tables of variables: each launcher's
// names, their order, and errors that name the variable.
#include "converters/launch/rank_env.h"

#include <stdlib.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::converters::launch {
namespace {

using ::testing::HasSubstr;

const char* Lookup(const std::map<std::string, std::string>& vars, const char* name) {
  auto it = vars.find(name);
  return it == vars.end() ? nullptr : it->second.c_str();
}

// ReadRankEnv over a fixed table of variables.
absl::StatusOr<RankEnv> Read(const std::map<std::string, std::string>& vars) {
  return ReadRankEnv({.require_local_rank = true}, [&vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

TEST(ReadRankEnvTest, NothingSetIsOneProcess) {
  auto env = Read({});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_FALSE(env->launched);
  EXPECT_EQ(env->rank, 0);
  EXPECT_EQ(env->world_size, 1);
  EXPECT_EQ(env->local_rank, 0);
}

TEST(ReadRankEnvTest, TorchrunVariables) {
  auto env = Read({{"RANK", "5"},
                   {"WORLD_SIZE", "8"},
                   {"LOCAL_RANK", "1"},
                   {"MASTER_ADDR", "node0"},
                   {"MASTER_PORT", "29500"},
                   {"SLURM_PROCID", "0"}});  // RANK wins over SLURM
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_TRUE(env->launched);
  EXPECT_EQ(env->rank, 5);
  EXPECT_EQ(env->world_size, 8);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->master_addr, "node0");
  EXPECT_EQ(env->master_port, 29500);
}

TEST(ReadRankEnvTest, SlurmFallback) {
  auto env = Read({{"SLURM_PROCID", "3"},
                   {"SLURM_NTASKS", "4"},
                   {"SLURM_LOCALID", "1"},
                   {"MASTER_ADDR", "10.0.0.1"},
                   {"MASTER_PORT", "6000"}});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_TRUE(env->launched);
  EXPECT_EQ(env->rank, 3);
  EXPECT_EQ(env->world_size, 4);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->master_addr, "10.0.0.1");
  EXPECT_EQ(env->master_port, 6000);
}

TEST(ReadRankEnvTest, BadValuesNameTheVariable) {
  const std::map<std::string, std::string> good = {{"RANK", "1"},
                                                   {"WORLD_SIZE", "2"},
                                                   {"LOCAL_RANK", "1"},
                                                   {"MASTER_ADDR", "h"},
                                                   {"MASTER_PORT", "29500"}};
  struct Case {
    std::string name, value, expected;  // value "-": the variable is removed
  };
  const std::vector<Case> cases = {
      {"RANK", "x", "RANK=\"x\" is not an integer"},
      {"RANK", "", "RANK=\"\" is not an integer"},
      {"RANK", "2", "RANK=2 is outside 0..1"},
      {"RANK", "-1", "RANK=-1 is outside"},
      {"WORLD_SIZE", "0", "WORLD_SIZE=0 is not a world size (1..65536)"},
      {"WORLD_SIZE", "65537", "WORLD_SIZE=65537 is not a world size (1..65536)"},
      {"WORLD_SIZE", "-", "RANK is set but WORLD_SIZE is not"},
      {"RANK", "-", "WORLD_SIZE is set but RANK is not"},
      {"LOCAL_RANK", "-", "RANK is set but LOCAL_RANK is not"},
      {"LOCAL_RANK", "5", "LOCAL_RANK=5 is outside"},
      {"MASTER_ADDR", "-", "MASTER_ADDR is not"},
      {"MASTER_PORT", "-", "MASTER_PORT is not"},
      {"MASTER_PORT", "0", "MASTER_PORT=0 is not a port"},
      {"MASTER_PORT", "65536", "MASTER_PORT=65536 is not a port"},
      {"MASTER_PORT", "http", "MASTER_PORT=\"http\" is not an integer"},
  };
  for (const Case& c : cases) {
    std::map<std::string, std::string> vars = good;
    if (c.value == "-") {
      vars.erase(c.name);
    } else {
      vars[c.name] = c.value;
    }
    auto env = Read(vars);
    ASSERT_FALSE(env.ok()) << c.name << "=" << c.value;
    EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(env.status().message(), HasSubstr(c.expected)) << c.name << "=" << c.value;
  }
  ASSERT_TRUE(Read(good).ok());
}

TEST(ReadRankEnvTest, SlurmErrorsNameSlurmVariables) {
  auto env = Read({{"SLURM_PROCID", "4"},
                   {"SLURM_NTASKS", "4"},
                   {"SLURM_LOCALID", "0"},
                   {"MASTER_ADDR", "h"},
                   {"MASTER_PORT", "1"}});
  ASSERT_FALSE(env.ok());
  EXPECT_THAT(env.status().message(), HasSubstr("SLURM_PROCID=4 is outside 0..3"));
  env = Read({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "0"}});
  ASSERT_FALSE(env.ok());
  EXPECT_THAT(env.status().message(), HasSubstr("MASTER_ADDR"));
}

TEST(ReadRankEnvTest, ProcessEnvironment) {
  ::setenv("RANK", "0", 1);
  ::setenv("WORLD_SIZE", "1", 1);
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", "1234", 1);
  auto env = ReadRankEnv();
  for (const char* name : {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) ::unsetenv(name);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_TRUE(env->launched);
  EXPECT_EQ(env->world_size, 1);
  EXPECT_EQ(env->master_port, 1234);
}

TEST(ReadRankEnvTest, MpirunVariablesAndLauncherNames) {
  auto env = Read({{"OMPI_COMM_WORLD_RANK", "6"},
                   {"OMPI_COMM_WORLD_SIZE", "16"},
                   {"OMPI_COMM_WORLD_LOCAL_RANK", "6"},
                   {"MASTER_ADDR", "node0"},
                   {"MASTER_PORT", "29500"}});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->launcher, "mpirun");
  EXPECT_EQ(env->rank, 6);
  EXPECT_EQ(env->world_size, 16);
  EXPECT_EQ(env->local_rank, 6);
  env = Read({{"OMPI_COMM_WORLD_RANK", "16"},
              {"OMPI_COMM_WORLD_SIZE", "16"},
              {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}});
  ASSERT_FALSE(env.ok());
  EXPECT_THAT(env.status().message(), HasSubstr("OMPI_COMM_WORLD_RANK=16 is outside 0..15"));
  // srun inside an mpirun-less allocation; torchrun over both.
  env = Read({{"SLURM_PROCID", "1"},
              {"SLURM_NTASKS", "2"},
              {"SLURM_LOCALID", "1"},
              {"OMPI_COMM_WORLD_RANK", "0"},
              {"MASTER_ADDR", "h"},
              {"MASTER_PORT", "2"}});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->launcher, "srun");
  EXPECT_EQ(env->rank, 1);
  EXPECT_EQ(Read({})->launcher, "");
}

TEST(ReadRankEnvTest, ALocalRankIsOptionalForAConversion) {
  const std::map<std::string, std::string> vars = {
      {"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "29500"}};
  auto env = ReadRankEnv({}, [&](const char* name) { return Lookup(vars, name); });
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->rank, 1);
  EXPECT_EQ(env->local_rank, 0);
  auto strict = Read(vars);
  ASSERT_FALSE(strict.ok());
  EXPECT_THAT(strict.status().message(), HasSubstr("RANK is set but LOCAL_RANK is not"));
}

TEST(ReadRankEnvTest, OneLaunchedRankNeedsNoMaster) {
  auto env = Read({{"RANK", "0"}, {"WORLD_SIZE", "1"}});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_TRUE(env->launched);
  EXPECT_EQ(env->master_addr, "");
  EXPECT_EQ(env->master_port, 0);
}

TEST(CoordinatorPortTest, OwnPortElasticAgentOrMasterPort) {
  auto port = [](const std::map<std::string, std::string>& vars) {
    absl::StatusOr<RankEnv> env =
        ReadRankEnv({}, [&](const char* name) { return Lookup(vars, name); });
    EXPECT_TRUE(env.ok()) << env.status();
    return CoordinatorPort(*env, [&](const char* name) { return Lookup(vars, name); });
  };
  const std::map<std::string, std::string> torchrun = {
      {"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "29500"}};
  EXPECT_EQ(*port(torchrun), 29500);
  auto elastic = torchrun;
  elastic["TORCHELASTIC_RUN_ID"] = "job";
  EXPECT_EQ(*port(elastic), 29501);
  auto own = elastic;
  own["UCP_DIST_PORT"] = "4000";
  EXPECT_EQ(*port(own), 4000);
  own["UCP_DIST_PORT"] = "70000";
  EXPECT_THAT(port(own).status().message(), HasSubstr("UCP_DIST_PORT=70000 is not a port"));
  elastic["MASTER_PORT"] = "65535";
  EXPECT_THAT(port(elastic).status().message(), HasSubstr("set UCP_DIST_PORT"));
  auto srun = std::map<std::string, std::string>{{"SLURM_PROCID", "0"},
                                                 {"SLURM_NTASKS", "2"},
                                                 {"MASTER_ADDR", "h"},
                                                 {"MASTER_PORT", "7000"},
                                                 {"TORCHELASTIC_RUN_ID", "stale"}};
  EXPECT_EQ(*port(srun), 7000);  // only torchrun's agent holds MASTER_PORT
}

TEST(RankEnvVariablesTest, NamesEveryLaunchersVariables) {
  const std::vector<std::string>& names = RankEnvVariables();
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SLURM_PROCID",
                           "SLURM_NTASKS", "SLURM_LOCALID", "OMPI_COMM_WORLD_RANK",
                           "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "MASTER_ADDR",
                           "MASTER_PORT", "UCP_DIST_PORT", "TORCHELASTIC_RUN_ID"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  }
}

}  // namespace
}  // namespace ucp::converters::launch
