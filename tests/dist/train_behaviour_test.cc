// `ucp train` end to end, what it does beside matching DeepSpeed (train_fidelity_test.cc):
// stages 0-3 and dp 1/2/4 give the same fp32 losses from one seeded init and the loss falls;
// gradient accumulation; csv_monitor; token files and weights-only starts; a dead rank is named
// (with and without ucp's launcher), never a hang; a save killed with SIGKILL leaves the previous
// checkpoint and `latest` loadable; bad config, missing data, another model's checkpoint: one
// error line; `ucp train` execs ucp-train.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "formats/base/scratch_dir_testutil.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/dist/train_testutil.h"
#include "tests/integration/child_process.h"
#include "tests/integration/convert_testutil.h"

namespace ucp {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace ::ucp::train_test;  // NOLINT: the shared helpers

// Same seeded init, same data: every stage and dp gives the same fp32 losses; and they fall.
TEST(TrainTest, StagesAndDpGiveTheSameLosses) {
  const json m = ReadJson(Fixture("s2_fp32_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_stages");
  json reference;
  for (int stage : {0, 1, 2, 3}) {
    for (int dp : {1, 2, 4}) {
      SCOPED_TRACE(absl::StrCat("stage ", stage, " dp ", dp));
      WriteConfigs(m, dp, scratch.path(), stage);
      std::vector<std::string> args = BaseArgs(dp, scratch.path());
      for (const char* a : {"--data", "recipe:7", "--train-steps", "6", "--seed", "42"})
        args.push_back(a);
      TrainRun r = Train(args, scratch.path());
      ASSERT_EQ(r.code, 0) << r.err;
      if (reference.is_null()) {
        reference = r.metrics["losses"];
        EXPECT_LT(reference["6"].get<double>(), reference["1"].get<double>() - 0.3)
            << reference.dump();
        continue;
      }
      for (const auto& [step, loss] : reference.items())
        EXPECT_NEAR(r.metrics["losses"][step].get<double>(), loss.get<double>(), 1e-5) << step;
    }
  }
}

// Gradient accumulation: 2 micro-batches of 2 rows on each of 2 ranks = 1 of 4 (same global
// batch, same rows per optimizer step): the same losses.
TEST(TrainTest, GradientAccumulationGivesTheSameLosses) {
  const json m = ReadJson(Fixture("s2_fp32_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_gas");
  json reference;
  for (int stage : {1, 2, 3}) {
    for (int gas : {1, 2}) {
      SCOPED_TRACE(absl::StrCat("stage ", stage, " gas ", gas));
      WriteConfigs(m, 2, scratch.path(), stage);
      json cfg = ReadJson(scratch.path() + "/ds.json");
      cfg["train_micro_batch_size_per_gpu"] = 4 / gas;
      cfg["gradient_accumulation_steps"] = gas;
      WriteJson(scratch.path() + "/ds.json", cfg);
      std::vector<std::string> args = BaseArgs(2, scratch.path());
      for (const char* a : {"--data", "recipe:3", "--train-steps", "4", "--seed", "5"})
        args.push_back(a);
      TrainRun r = Train(args, scratch.path());
      ASSERT_EQ(r.code, 0) << r.err;
      if (reference.is_null()) {
        reference = r.metrics["losses"];
        continue;
      }
      for (const auto& [step, loss] : reference.items())
        EXPECT_NEAR(r.metrics["losses"][step].get<double>(), loss.get<double>(), 1e-5) << step;
    }
  }
}

// csv_monitor: rank 0 writes DeepSpeed's CSV files (step = global samples).
TEST(TrainTest, CsvMonitorWritesDeepSpeedsFiles) {
  const json m = ReadJson(Fixture("s2_fp32_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_csv");
  WriteConfigs(m, 2, scratch.path());
  json cfg = ReadJson(scratch.path() + "/ds.json");
  cfg["csv_monitor"] = {
      {"enabled", true}, {"output_path", scratch.path() + "/csv"}, {"job_name", "run1"}};
  WriteJson(scratch.path() + "/ds.json", cfg);
  std::vector<std::string> args = BaseArgs(2, scratch.path());
  for (const char* a : {"--data", "recipe:1", "--train-steps", "3"}) args.push_back(a);
  TrainRun r = Train(args, scratch.path());
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream lr(scratch.path() + "/csv/run1/Train_Samples_lr.csv");
  std::stringstream text;
  text << lr.rdbuf();
  // WarmupLR linear 0 -> 0.01 over 3 steps: steps 1-3 at 0, 0, 0.01 * (1 / 3) (DeepSpeed: min +
  // (max - min) * gamma), as Python writes the floats.
  EXPECT_EQ(text.str(), "step,lr\r\n8,0.0\r\n16,0.0\r\n24,0.003333333333333333\r\n");
  std::ifstream loss(scratch.path() + "/csv/run1/Train_Samples_train_loss.csv");
  std::string header;
  std::getline(loss, header);
  EXPECT_EQ(header, "step,train_loss\r");
}

// Token data: a nanoGPT uint16 file; the sampler's rows do not depend on dp (same losses at dp 1
// and 2), and weights given by --weights (a safetensors export) or --load --load-module-only (the
// ZeRO folder) start the same run.
TEST(TrainTest, TokenFileAndWeightsOnly) {
  const json m = ReadJson(Fixture("s2_fp32_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_tokens");
  {
    std::ofstream f(scratch.path() + "/train.bin", std::ios::binary);
    for (int i = 0; i < 5000; ++i) {
      const uint16_t t = static_cast<uint16_t>((i * 7 + i / 13) % 61);
      f.write(reinterpret_cast<const char*>(&t), 2);
    }
  }
  const std::string exported = scratch.path() + "/weights";
  const std::string ucp_cmd =
      absl::StrCat("'", std::getenv("UCP_BIN"), "' export '", Fixture("s2_fp32_dp2"),
                   "/checkpoint' --out '", exported, "' --no-fsync >/dev/null 2>&1");
  ASSERT_EQ(std::system(ucp_cmd.c_str()), 0);
  json reference;
  for (int dp : {1, 2}) {
    for (int source = 0; source < 2; ++source) {
      SCOPED_TRACE(absl::StrCat("dp ", dp, source == 0 ? " --weights" : " --load-module-only"));
      WriteConfigs(m, dp, scratch.path());
      std::vector<std::string> args = BaseArgs(dp, scratch.path());
      for (const std::string& a : {std::string("--data"), scratch.path() + "/train.bin",
                                   std::string("--train-steps"), std::string("3")})
        args.push_back(a);
      if (source == 0) {
        args.push_back("--weights");
        args.push_back(exported);
      } else {
        for (const std::string& a : {std::string("--load"), Fixture("s2_fp32_dp2") + "/checkpoint",
                                     std::string("--load-module-only")})
          args.push_back(a);
      }
      TrainRun r = Train(args, scratch.path());
      ASSERT_EQ(r.code, 0) << r.err;
      EXPECT_EQ(r.metrics["global_steps"], 3);  // weights only: a fresh run
      if (reference.is_null()) {
        reference = r.metrics["losses"];
        continue;
      }
      for (const auto& [step, loss] : reference.items())
        EXPECT_NEAR(r.metrics["losses"][step].get<double>(), loss.get<double>(), 1e-5) << step;
    }
  }
}

// A rank killed in the middle of training: the launcher names it and every process is gone within
// the grace period, never a hang.
TEST(TrainTest, DeadRankIsNamedNotAHang) {
  const json m = ReadJson(Fixture("s2_fp32_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_dead");
  WriteConfigs(m, 2, scratch.path());
  const std::string err = scratch.path() + "/err.txt";
  // The launcher's child ranks found through /proc (no pgrep on a bare machine).
  const std::string script = scratch.path() + "/run.sh";
  std::ofstream(script) << "'" << TrainBin() << "' --nproc 2 --config '" << scratch.path()
                        << "/ds.json' --model-config '" << scratch.path()
                        << "/model.json' --data recipe:1 --train-steps 1000000 2>'" << err
                        << "' &\nL=$!\nsleep 3\n"
                        << "for d in /proc/[0-9]*; do read -r _ _ _ pp _ 2>/dev/null < $d/stat; "
                        << "[ \"$pp\" = \"$L\" ] && R=${d#/proc/}; done\n"
                        << "kill -9 $R\nwait $L\necho $? > '" << scratch.path() << "/code'\n";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(std::system(("bash '" + script + "'").c_str()), 0);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(sec, 30);
  std::ifstream code(scratch.path() + "/code");
  int c = -1;
  code >> c;
  EXPECT_EQ(c, 1);
  std::ifstream e(err);
  std::stringstream ss;
  ss << e.rdbuf();
  EXPECT_NE(ss.str().find("was killed by signal 9"), std::string::npos) << ss.str();
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

// Without ucp's launcher (torchrun / srun style: RANK, WORLD_SIZE, MASTER_* set by hand), a rank
// killed mid-training: the survivor's error names it (the heartbeats in the rendezvous store) and
// it exits 1 within seconds.
TEST(TrainTest, DeadPeerIsNamedWithoutTheLauncher) {
  const json m = ReadJson(Fixture("s2_fp32_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_dead_peer");
  WriteConfigs(m, 2, scratch.path());
  const int port = FreePort();
  ASSERT_GT(port, 0);
  std::string cmd;
  for (int r = 0; r < 2; ++r) {
    absl::StrAppend(&cmd, "RANK=", r, " WORLD_SIZE=2 LOCAL_RANK=", r,
                    " LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=", port, " '",
                    TrainBin(), "' --config '", scratch.path(), "/ds.json' --model-config '",
                    scratch.path(), "/model.json' --data recipe:1 --train-steps 1000000 2>'",
                    scratch.path(), "/err", r, "' & P", r, "=$!; ");
  }
  absl::StrAppend(&cmd, "sleep 4; kill -9 $P1; wait $P0; echo $? > '", scratch.path(), "/code'\n");
  const std::string script = scratch.path() + "/run.sh";
  std::ofstream(script) << cmd;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(std::system(("bash '" + script + "'").c_str()), 0);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 40);
  std::ifstream code(scratch.path() + "/code");
  int c = -1;
  code >> c;
  EXPECT_EQ(c, 1);
  std::ifstream e(scratch.path() + "/err0");
  std::stringstream ss;
  ss << e.rdbuf();
  EXPECT_NE(ss.str().find("rank(s) 1 stopped answering"), std::string::npos) << ss.str();
}

// A save killed with SIGKILL in the middle of writing: the previous checkpoint and `latest`
// still load (the new tag folder was being written in a staging folder).
TEST(TrainTest, KilledSaveLeavesThePreviousCheckpoint) {
  const json m = ReadJson(Fixture("s2_fp32_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_kill");
  json cfg = m["ds_config"];
  cfg["train_micro_batch_size_per_gpu"] = 8;
  WriteJson(scratch.path() + "/ds.json", cfg);
  WriteJson(scratch.path() + "/model.json", kTinyLm);
  const std::string out = scratch.path() + "/out";
  const std::vector<std::string> common = {"--config",
                                           scratch.path() + "/ds.json",
                                           "--model-config",
                                           scratch.path() + "/model.json",
                                           "--data",
                                           "recipe:1",
                                           "--no-fsync",
                                           "--save",
                                           out};
  std::vector<std::string> first = common;
  for (const char* a : {"--train-steps", "2"}) first.push_back(a);
  ASSERT_EQ(Train(first, scratch.path()).code, 0);
  // The second save pauses inside the executor (its test hook), is killed there.
  const std::string ready = scratch.path() + "/ready";
  std::vector<std::string> second = common;
  for (const char* a : {"--train-steps", "1", "--load"}) second.push_back(a);
  second.push_back(out);
  setenv("UCP_TEST_PAUSE_AFTER_OPS", "1", 1);
  setenv("UCP_TEST_PAUSE_READY", ready.c_str(), 1);
  const pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> argv{const_cast<char*>(std::getenv("UCP_TRAIN_BIN"))};
    for (std::string& a : second) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  unsetenv("UCP_TEST_PAUSE_AFTER_OPS");
  unsetenv("UCP_TEST_PAUSE_READY");
  ASSERT_TRUE(testing::WaitForFile(ready, 60));
  kill(pid, SIGKILL);
  EXPECT_EQ(testing::WaitForExit(pid), -SIGKILL);
  std::ifstream latest(out + "/latest");
  std::string tag;
  latest >> tag;
  EXPECT_EQ(tag, "global_step2");
  EXPECT_FALSE(fs::exists(out + "/global_step3"));
  std::vector<std::string> resume = common;
  for (const char* a : {"--train-steps", "1", "--load"}) resume.push_back(a);
  resume.push_back(out);
  TrainRun r = Train(resume, scratch.path());
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.metrics["losses"].contains("3")) << r.metrics.dump();
}

TEST(TrainTest, BadInputIsOneClearError) {
  testing::ScratchDir scratch("train_errors");
  const json m = ReadJson(Fixture("s2_fp32_dp2") + "/manifest.json");
  WriteConfigs(m, 2, scratch.path());
  json bad = m["ds_config"];
  bad["zero_optimization"]["reduce_bucket_sz"] = 5;
  WriteJson(scratch.path() + "/bad.json", bad);
  json other = kTinyLm;
  other["hidden_size"] = 32;
  WriteJson(scratch.path() + "/other.json", other);
  const std::string model = scratch.path() + "/model.json", ds = scratch.path() + "/ds.json";
  ASSERT_EQ(mkfifo((scratch.path() + "/fifo").c_str(), 0600), 0);  // must not block the run
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--config", scratch.path() + "/bad.json", "--model-config", model, "--data", "recipe:1",
        "--train-steps", "1"},
       1,
       "did you mean `zero_optimization.reduce_bucket_size`?"},
      {{"--config", ds, "--model-config", model, "--data", scratch.path() + "/missing.bin",
        "--train-steps", "1"},
       1,
       "missing.bin"},
      {{"--config", ds, "--model-config", scratch.path() + "/other.json", "--data", "recipe:1",
        "--train-steps", "1", "--load", Fixture("s2_fp32_dp2") + "/checkpoint"},
       1,
       "a checkpoint of another model?"},
      {{"--config", ds, "--model-config", model, "--train-steps", "1"}, 2, "--data is required"},
      {{"--config", scratch.path() + "/fifo", "--model-config", model, "--data", "recipe:1",
        "--train-steps", "1"},
       1,
       "not a regular file"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    std::vector<std::string> args = {"--nproc", "2"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    TrainRun r = Train(args, scratch.path());
    EXPECT_EQ(r.code, c.code) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("error: "), std::string::npos) << r.err;
  }
}

// `ucp train` is ucp-train: same arguments, same exit codes.
TEST(TrainTest, UcpTrainExecsTheRuntime) {
  const std::string cmd = absl::StrCat("UCP_TRAIN_BIN='", TrainBin(), "' '", std::getenv("UCP_BIN"),
                                       "' train --help >/dev/null");
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  const std::string bad = absl::StrCat("UCP_TRAIN_BIN='", TrainBin(), "' '", std::getenv("UCP_BIN"),
                                       "' train --bogus 2>/dev/null");
  const int st = std::system(bad.c_str());
  EXPECT_EQ(WEXITSTATUS(st), 2);
}

}  // namespace
}  // namespace ucp
