// The real `ucp` binary (UCP_BIN): exact exit codes (0 ok, 1 failure, 2 usage, 3 verify
// incomplete), one "error:" line per failure, and under --json an {"error": ...} document on
// stdout.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "formats/base/scratch_dir_testutil.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

struct Outcome {
  int code = -1;
  std::string out, err;
};

std::string Slurp(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs UCP_BIN with `args`; stdout and stderr go through files of a per-test folder.
Outcome Ucp(const std::vector<std::string>& args) {
  const ucp::testutil::ScratchDir scratch("io");
  const fs::path& dir = scratch.path();
  const fs::path out = dir / "out", err = dir / "err";
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(o, STDOUT_FILENO);
    ::dup2(e, STDERR_FILENO);
    std::vector<char*> argv;
    const char* bin = std::getenv("UCP_BIN");
    argv.push_back(const_cast<char*>(bin));
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(bin, argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  Outcome r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = Slurp(out);
  r.err = Slurp(err);
  return r;
}

std::string Fixture(const std::string& rel) {
  return std::string(std::getenv("UCP_SOURCE_DIR")) + "/fixtures/deepspeed/" + rel;
}

class TempDir {
 public:
  std::string operator/(const std::string& name) const { return scratch_.File(name); }

 private:
  ucp::testutil::ScratchDir scratch_{"case"};
};

// Every bad value of every kind of option: exit 2 exactly, one short "error:" line naming the
// option.
TEST(UcpBinary, UsageErrorsExitTwoWithAShortMessage) {
  const TempDir tmp;
  const std::string ck = Fixture("s2_fp32_dp2/checkpoint");
  const std::string out = tmp / "out";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"reshard", ck, "--dp", "0", "--out", out},
       "error: --dp: expected a whole number from 1 to 2147483647, got '0'"},
      {{"reshard", ck, "--dp", "abc", "--out", out}, "error: --dp: expected a whole number"},
      {{"reshard", ck, "--dp", "2", "--threads", "-3", "--out", out},
       "error: --threads: expected a whole number"},
      {{"reshard", ck, "--dp", "2", "--zero-stage", "-1", "--out", out},
       "error: --zero-stage: expected one of 0, 1"},
      {{"reshard", ck, "--dp", "2", "--tag", "", "--out", out},
       "error: --tag: expected a folder name, got ''"},
      {{"reshard", ck, "--dp", "2", "--tag", "../x", "--out", out},
       "error: --tag: expected one folder name"},
      {{"reshard", ck, "--dp", "2", "--memory-limit", "0", "--out", out},
       "error: --memory-limit: expected a size"},
      {{"export", ck, "--max-shard-size", "0", "--out", out},
       "error: --max-shard-size: expected a size"},
      {{"export", ck, "--dtype", "fp8", "--out", out},
       "error: --dtype: expected one of f32, bf16, f16"},
      {{"export", ck, "--format", "npz", "--out", out},
       "error: --format: expected one of safetensors, bin, hdf5"},
      {{"diff", ck, ck, "--atol", "-1"}, "error: --atol: expected a number >= 0, got '-1'"},
      {{"diff", ck, ck, "--states", "fp32,moo"},
       "error: --states: expected one of fp32, exp_avg, exp_avg_sq"},
      {{"convert", ck, out, "--threads", "0"}, "error: --threads: expected a whole number"},
      {{"inspect", ck, "--values", "-1"}, "error: --values: expected a whole number from 0"},
      {{"zero-to-fp32", ck, out, "--max_shard_size", "0"},
       "error: --max_shard_size: expected a size"},
      {{"inspect"}, "error: PATH is required"},
      {{"inspect", ck, "--verify"},
       "error: --verify checks one file; for a checkpoint folder run `ucp verify"},
      {{"inspcet", ck}, "error: unknown command 'inspcet'; did you mean 'inspect'?"},
      {{}, "error: no command given; the commands: inspect, convert"},
      {{"inspect", ck, "--no-such-flag"},
       "error: The following argument was not expected: --no-such-flag"},
  };
  for (const auto& [args, message] : cases) {
    const Outcome r = Ucp(args);
    const std::string what = ::testing::PrintToString(args);
    EXPECT_EQ(r.code, 2) << what << "\n" << r.err;
    EXPECT_THAT(r.err, StartsWith(message)) << what;
    EXPECT_LT(r.err.size(), 300u) << what;  // no 300-digit numbers
    EXPECT_EQ(r.out, "") << what;
  }
  EXPECT_FALSE(fs::exists(out));
}

TEST(UcpBinary, HelpAndVersionExitZero) {
  EXPECT_EQ(Ucp({"--help"}).code, 0);
  EXPECT_EQ(Ucp({"--version"}).code, 0);
  const Outcome help = Ucp({"convert", "--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_THAT(help.out, HasSubstr("ZeRO-0/1/2/3"));
  EXPECT_THAT(help.out, HasSubstr("native MoE"));
}

TEST(UcpBinary, JsonErrorsAreADocumentOnStdout) {
  const Outcome usage =
      Ucp({"reshard", Fixture("s2_fp32_dp2/checkpoint"), "--dp", "0", "--out", "x", "--json"});
  EXPECT_EQ(usage.code, 2);
  const nlohmann::json u = nlohmann::json::parse(usage.out);
  EXPECT_EQ(u["schema_version"], 1);
  EXPECT_EQ(u["command"], "reshard");
  EXPECT_EQ(u["usage"], true);
  EXPECT_THAT(u["error"].get<std::string>(), StartsWith("--dp: expected"));
  const Outcome missing = Ucp({"inspect", "/nonexistent/ckpt.pt", "--json"});
  EXPECT_EQ(missing.code, 1);
  const nlohmann::json m = nlohmann::json::parse(missing.out);
  EXPECT_EQ(m["command"], "inspect");
  EXPECT_THAT(m["error"].get<std::string>(), HasSubstr("/nonexistent/ckpt.pt"));
  EXPECT_EQ(missing.err, "error: " + m["error"].get<std::string>() + "\n");
}

// A check verify cannot make (a file it does not know) makes the report incomplete: exit 3.
TEST(UcpBinary, VerifyExitsThreeWhenItSkipsChecks) {
  const TempDir tmp;
  fs::copy(Fixture("s2_fp32_dp2/checkpoint/global_step5"), tmp / "tag",
           fs::copy_options::recursive);
  EXPECT_EQ(Ucp({"verify", tmp / "tag"}).code, 0);
  std::ofstream(tmp / "tag/notes.txt") << "hello";
  const Outcome text = Ucp({"verify", tmp / "tag"});
  EXPECT_EQ(text.code, 3) << text.out << text.err;
  EXPECT_THAT(
      text.out,
      HasSubstr("skipped: file: notes.txt: not a file of this checkpoint kind: not checked"));
  EXPECT_THAT(text.out, HasSubstr("no problem found; INCOMPLETE: 1 check(s) skipped"));
  const Outcome json = Ucp({"verify", "--json", tmp / "tag"});
  EXPECT_EQ(json.code, 3);
  const nlohmann::json j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["complete"], false);
  EXPECT_EQ(j["skipped"][0]["file"], "notes.txt");
  // Problems win over skips: exit 1.
  const fs::path shard = fs::path(tmp / "tag") / "zero_pp_rank_1_mp_rank_00_optim_states.pt";
  fs::resize_file(shard, fs::file_size(shard) - 100);
  EXPECT_EQ(Ucp({"verify", tmp / "tag"}).code, 1);
}

// What the real run would do with an existing output, as the output guard decides.
TEST(UcpBinary, DryRunWarnsWhenTheOutputExists) {
  const TempDir tmp;
  const std::string ck = Fixture("s2_fp32_dp2/checkpoint");
  ASSERT_EQ(Ucp({"export", ck, "--out", tmp / "taken", "--no-fsync"}).code, 0);  // ucp's own
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"convert", ck, tmp / "taken", "--dry-run"},
        std::vector<std::string>{"reshard", ck, "--dp", "4", "--out", tmp / "taken", "--dry-run"},
        std::vector<std::string>{"export", ck, "--out", tmp / "taken", "--dry-run"}}) {
    const Outcome r = Ucp(args);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_THAT(r.err, HasSubstr("warning: " + (tmp / "taken") +
                                 " exists: the run would refuse it (add --force to replace it)"));
  }
  const Outcome forced = Ucp({"export", ck, "--out", tmp / "taken", "--dry-run", "--force"});
  EXPECT_THAT(forced.err, HasSubstr("exists: the run would replace it (--force)"));
  fs::create_directories(tmp / "foreign");
  std::ofstream(tmp / "foreign/notes.txt") << "mine";
  const Outcome foreign = Ucp({"export", ck, "--out", tmp / "foreign", "--dry-run", "--force"});
  EXPECT_THAT(foreign.err, HasSubstr("exists: the run would refuse it, with or without --force: "));
  fs::create_directories(tmp / "empty");  // taken over, as zero_to_fp32.py does
  EXPECT_EQ(Ucp({"export", ck, "--out", tmp / "empty", "--dry-run"}).err, "");
  EXPECT_EQ(Ucp({"export", ck, "--out", tmp / "fresh", "--dry-run"}).err, "");
}

// zero_to_fp32.py's own error message suggests --force; the drop-in accepts it.
TEST(UcpBinary, ZeroToFp32AcceptsForce) {
  const TempDir tmp;
  const std::string ck = Fixture("s2_fp32_dp2/checkpoint");
  ASSERT_EQ(Ucp({"zero-to-fp32", ck, tmp / "out", "--no-fsync"}).code, 0);
  const Outcome again = Ucp({"zero-to-fp32", ck, tmp / "out", "--no-fsync"});
  EXPECT_EQ(again.code, 1);
  EXPECT_THAT(again.err, HasSubstr("--force"));
  const Outcome forced = Ucp({"zero-to-fp32", ck, tmp / "out", "--force", "--no-fsync"});
  EXPECT_EQ(forced.code, 0) << forced.err;
  EXPECT_TRUE(fs::exists(tmp / "out/pytorch_model.bin"));
}

}  // namespace
