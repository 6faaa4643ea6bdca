// End-to-end: every DeepSpeed fixture converted with the convert pipeline and compared with
// DeepSpeed's own ds_to_universal output (global_step5_universal/ + latest_universal): the same
// file set, and every file byte-identical or equal as a value tree with bitwise-equal tensors
// (the first difference is printed with its key path). Then the failure contract: bad input and
// failures leave nothing at the output path, and a `ucp convert` killed with SIGKILL leaves at
// most its staging folder, which the next run removes.
#include "converters/pipelines/convert.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "converters/deepspeed/gather.h"
#include "formats/torch/torch_file.h"
#include "gtest/gtest.h"
#include "tests/integration/child_process.h"
#include "tests/integration/convert_testutil.h"
#include "ucp/manifest.h"
#include "ucp/staging_dir.h"
#include "ucp/ucp_layout.h"

namespace ucp::testing {
namespace {

namespace fs = std::filesystem;
using converters::pipelines::Convert;
using converters::pipelines::ConvertOptions;
using converters::pipelines::ConvertResult;

const char* const kCases[] = {"s1_fp32_dp2",
                              "s1_fp32_dp4",
                              "s1_bf16opt_dp4",
                              "s2_fp32_dp2",
                              "s2_fp32_dp4",
                              "s2_bf16_dp2",
                              "s3_fp32_dp2",
                              "s3_fp32_dp4",
                              "s3_fp32_1group_dp4",
                              "autoep_mixtral_s2_fp32_dp4_ep2",
                              "autoep_qwen3_s3_fp32_dp4_ep2",
                              "autoep_deepseek_v3_s1_fp32_dp4_ep4",
                              "autoep_qwen3_s2_fp32_dp2_ep1",
                              "autoep_mixtral_s3_fp32_dp4_ep2",
                              "autoep_mixtral_s2_bf16_dp4_ep2",
                              "s3_bf16_dp1",
                              "s3_bf16_dp2",
                              "s3_bf16_dp4",
                              "s1_bf16_dp2"};
// Real DeepSpeed AutoTP runs (tp 2; fixtures/deepspeed_tp). The generated fixtures/tp cases are
// checked by tests/interop/test_tp_convert.py against their formulas: their UCPs come from
// ds_to_universal run with stand-ins for the rest of DeepSpeed, which pickle ZeroStageEnum
// differently from DeepSpeed itself.
const char* const kTpCases[] = {"deepspeed_tp/autotp_llama_s1_fp32_tp2_dp1",
                                "deepspeed_tp/autotp_llama_s2_bf16_tp2_dp1",
                                "deepspeed_tp/autotp_llama_s2_fp32_tp2_dp2"};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Binary(const std::string& name) { return absl::StrCat(UCP_CLI_BINARY_DIR, "/", name); }

ConvertOptions Options(const std::string& input, const std::string& output) {
  ConvertOptions o;
  o.input = input;
  o.output = output;
  o.execute.threads = 2;
  o.execute.fsync = false;
  return o;
}

class ConvertFixtureTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ConvertFixtureTest, EqualsDeepSpeedsUniversalCheckpoint) {
  const std::string name = GetParam();
  ScratchDir scratch(name);
  const std::string out = scratch.path() + "/global_step5_universal";
  absl::StatusOr<ConvertResult> r =
      Convert(Options(FixtureCase(name) + "/checkpoint/global_step5", out));
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string theirs = FixtureCase(name) + "/checkpoint/global_step5_universal";
  absl::StatusOr<FolderComparison> cmp =
      CompareFolders(out, theirs, std::string(ucp::kManifestFile));
  ASSERT_TRUE(cmp.ok()) << cmp.status();
  std::cout << "[ convert  ] " << name << ": " << cmp->identical.size() << " files byte-identical, "
            << cmp->tree_equal.size() << " equal as value trees ("
            << absl::StrJoin(cmp->tree_equal, ", ") << "), " << cmp->problems.size() << " differ\n";
  EXPECT_TRUE(cmp->problems.empty()) << name << ":\n  " << absl::StrJoin(cmp->problems, "\n  ");
  // What README.md and docs/ucp.md promise: every per-parameter file byte-identical.
  for (const std::string& f : cmp->tree_equal) {
    EXPECT_TRUE(f.rfind("zero/", 0) != 0 || f == "zero/optimizer_state.pt")
        << name << ": " << f << " is not byte-identical";
  }
  if (fs::exists(FixtureCase(name) + "/checkpoint/latest_universal")) {  // deepspeed_tp kept none
    EXPECT_EQ(ReadAll(scratch.path() + "/latest_universal"),
              ReadAll(FixtureCase(name) + "/checkpoint/latest_universal"));
  }
  EXPECT_TRUE(ucp::VerifyDirectory(out).ok());
  EXPECT_FALSE(fs::exists(ucp::StagingPathFor(out)));

  // A second run refuses to overwrite, unless forced.
  absl::StatusOr<ConvertResult> again =
      Convert(Options(FixtureCase(name) + "/checkpoint/global_step5", out));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  ConvertOptions forced = Options(FixtureCase(name) + "/checkpoint/global_step5", out);
  forced.force = true;
  forced.execute.threads = 1;
  forced.execute.memory_limit = 4096;  // many small chunks: the CRCs combine the same way
  ASSERT_TRUE(Convert(forced).ok());
  EXPECT_TRUE(ucp::VerifyDirectory(out).ok());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ConvertFixtureTest, ::testing::ValuesIn(kCases));
INSTANTIATE_TEST_SUITE_P(TpFixtures, ConvertFixtureTest, ::testing::ValuesIn(kTpCases),
                         [](const auto& test) {
                           std::string name = test.param;
                           std::replace(name.begin(), name.end(), '/', '_');
                           return name;
                         });

TEST(CompareTest, FirstDifferenceNamesTheKeyPath) {
  const std::string dir =
      FixtureCase("s2_fp32_dp2") + "/checkpoint/global_step5_universal/zero/embed.weight/";
  absl::StatusOr<nlohmann::json> fp32 = TorchFileDigest(dir + "fp32.pt");
  absl::StatusOr<nlohmann::json> exp_avg = TorchFileDigest(dir + "exp_avg.pt");
  ASSERT_TRUE(fp32.ok() && exp_avg.ok());
  EXPECT_EQ(FirstDifference(*fp32, *fp32), "");
  const std::string d = FirstDifference(*fp32, *exp_avg);
  EXPECT_EQ(d.rfind(".dict['param'][1].tensor.", 0), 0u) << d;  // data_crc32 or requires_grad
}

TEST(ConvertFailureTest, TruncatedShardLeavesNoOutput) {
  ScratchDir scratch("truncated");
  const std::string tag = scratch.path() + "/global_step5";
  fs::copy(FixtureCase("s2_fp32_dp2") + "/checkpoint/global_step5", tag);
  const std::string shard = tag + "/zero_pp_rank_1_mp_rank_00_optim_states.pt";
  fs::resize_file(shard, fs::file_size(shard) / 2);
  const std::string out = scratch.path() + "/out";
  absl::StatusOr<ConvertResult> r = Convert(Options(tag, out));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("zero_pp_rank_1_mp_rank_00_optim_states.pt"),
            std::string::npos)
      << r.status();
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(ucp::StagingPathFor(out)));
  EXPECT_FALSE(fs::exists(scratch.path() + "/latest_universal"));
}

TEST(ConvertFailureTest, FailureAfterStagingLeavesNoOutput) {
  ScratchDir scratch("late_failure");
  const std::string out = scratch.path() + "/out";
  ConvertOptions o = Options(FixtureCase("s3_fp32_dp2") + "/checkpoint/global_step5", out);
  o.execute.memory_limit = 0;  // rejected by the executor, after the staging folder was made
  EXPECT_EQ(Convert(o).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(ucp::StagingPathFor(out)));
}

TEST(ConvertFailureTest, OutputMayNotBeTheInput) {
  const std::string tag = FixtureCase("s1_fp32_dp2") + "/checkpoint/global_step5";
  EXPECT_EQ(Convert(Options(tag, tag + "/")).status().code(), absl::StatusCode::kInvalidArgument);
}

// Runs a command line through the shell; returns the exit code and fills stdout/stderr.
int Shell(const std::string& command, const std::string& scratch, std::string* out,
          std::string* err) {
  const std::string o = scratch + "/stdout.txt", e = scratch + "/stderr.txt";
  const int status = std::system(absl::StrCat(command, " >", o, " 2>", e).c_str());
  *out = ReadAll(o);
  *err = ReadAll(e);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(ConvertCliTest, BadInputIsOneErrorLineAndNoOutput) {
  ScratchDir scratch("cli_bad");
  const std::string tag = scratch.path() + "/global_step5";
  fs::copy(FixtureCase("s3_fp32_dp2") + "/checkpoint/global_step5", tag);
  const std::string shard = tag + "/zero_pp_rank_0_mp_rank_00_optim_states.pt";
  std::ofstream(shard, std::ios::binary | std::ios::trunc) << "not a zip";
  std::string out, err;
  EXPECT_EQ(Shell(absl::StrCat(Binary("ucp"), " convert ", tag, " ", scratch.path(), "/out"),
                  scratch.path(), &out, &err),
            1);
  EXPECT_EQ(err.rfind("error: ", 0), 0u) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_NE(err.find("zero_pp_rank_0_mp_rank_00_optim_states.pt"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(scratch.path() + "/out"));
  EXPECT_FALSE(fs::exists(ucp::StagingPathFor(scratch.path() + "/out")));
}

TEST(ConvertCliTest, AliasTakesDsToUniversalFlags) {
  ScratchDir scratch("cli_alias");
  const std::string out_dir = scratch.path() + "/global_step5_universal";
  std::string out, err;
  ASSERT_EQ(
      Shell(absl::StrCat(
                Binary("ucp-convert"), " --input_folder ",
                FixtureCase("autoep_mixtral_s2_fp32_dp4_ep2"), "/checkpoint/global_step5",
                " --output_folder ", out_dir,
                " --num_extract_workers 2 --num_merge_workers 1 --keep_temp_folder --no-fsync"),
            scratch.path(), &out, &err),
      0)
      << err;
  EXPECT_NE(err.find("--keep_temp_folder has no effect"), std::string::npos) << err;
  EXPECT_NE(out.find("wrote " + out_dir), std::string::npos) << out;
  EXPECT_TRUE(ucp::VerifyDirectory(out_dir).ok());
  // --dry-run --json prints the plan and writes nothing.
  ASSERT_EQ(Shell(absl::StrCat(Binary("ucp"), " convert --dry-run --json ",
                               FixtureCase("s1_fp32_dp2"), "/checkpoint ", scratch.path(), "/dry"),
                  scratch.path(), &out, &err),
            0)
      << err;
  EXPECT_NE(out.find("\"num_ops\""), std::string::npos);
  EXPECT_FALSE(fs::exists(scratch.path() + "/dry"));
  // Usage errors exit 2.
  EXPECT_EQ(Shell(Binary("ucp-convert") + " --input_folder x", scratch.path(), &out, &err), 2);
}

// People migrating from ds_to_universal.py type its flags after `ucp convert` too.
TEST(ConvertCliTest, ConvertTakesDsToUniversalFolderFlags) {
  ScratchDir scratch("cli_convert_flags");
  const std::string in = FixtureCase("s1_fp32_dp2") + "/checkpoint/global_step5";
  const std::string out_dir = scratch.path() + "/global_step5_universal";
  std::string out, err;
  ASSERT_EQ(Shell(absl::StrCat(Binary("ucp"), " convert --input_folder ", in, " --output_folder ",
                               out_dir, " --no-fsync"),
                  scratch.path(), &out, &err),
            0)
      << err;
  EXPECT_TRUE(ucp::VerifyDirectory(out_dir).ok());
  // Exactly one spelling of each, and an input is required.
  EXPECT_EQ(Shell(absl::StrCat(Binary("ucp"), " convert ", in, " --input_folder ", in),
                  scratch.path(), &out, &err),
            2);
  EXPECT_EQ(Shell(absl::StrCat(Binary("ucp"), " convert --output_folder ", out_dir), scratch.path(),
                  &out, &err),
            2);
  EXPECT_NE(err.find("INPUT (or --input_folder) is required"), std::string::npos) << err;
}

TEST(ConvertKillTest, KilledRunLeavesNoOutputAndTheNextRunCleansUp) {
  ScratchDir scratch("kill");
  const std::string tag = scratch.path() + "/global_step5";
  // About 250 MB of shards, 370 MB of output.
  ASSERT_TRUE(
      MakeScaledZero3(FixtureCase("s3_fp32_dp2") + "/checkpoint/global_step5", tag, 3000).ok());
  const std::string out = scratch.path() + "/global_step5_universal";
  const std::string ready = scratch.path() + "/paused";
  // The executor's test hook stops the run after 40 copy chunks of 64 KiB: the kill always lands
  // in the middle of writing, however fast the machine.
  const pid_t pid =
      SpawnUcp({"convert", tag, out, "--threads", "1", "--memory-limit", "64KiB"},
               scratch.path() + "/stdout.txt", scratch.path() + "/stderr.txt", 40, ready);
  ASSERT_GT(pid, 0);
  const bool paused = WaitForFile(ready, 120);
  ::kill(pid, SIGKILL);
  EXPECT_EQ(WaitForExit(pid), -SIGKILL);
  ASSERT_TRUE(paused) << "the run never reached its 40th chunk: "
                      << ReadAll(scratch.path() + "/stderr.txt");
  EXPECT_FALSE(fs::exists(out)) << "a killed run left " << out;
  const std::string staging = ucp::StagingPathFor(out);
  EXPECT_TRUE(fs::exists(staging + "/" + std::string(ucp::kPartialMarker)));
  EXPECT_FALSE(fs::exists(staging + "/" + std::string(ucp::kManifestFile)));

  ConvertOptions o = Options(tag, out);
  absl::StatusOr<ConvertResult> r = Convert(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->removed_stale_partial);
  EXPECT_FALSE(fs::exists(ucp::StagingPathFor(out)));
  EXPECT_TRUE(ucp::VerifyDirectory(out).ok());
  EXPECT_GT(r->bytes, uint64_t{100} << 20);

  // The big files hold exactly the fragments (multi-chunk copies, combined CRCs).
  absl::StatusOr<converters::deepspeed::CheckpointIndex> index =
      converters::deepspeed::OpenCheckpoint(tag);
  ASSERT_TRUE(index.ok());
  const converters::deepspeed::Parameter* p = index->FindParam("embed.weight");
  ASSERT_NE(p, nullptr);
  absl::StatusOr<Buffer> want =
      converters::deepspeed::GatherState(*index, *p, converters::deepspeed::StateKind::kExpAvgSq);
  ASSERT_TRUE(want.ok());
  absl::StatusOr<formats::torch::TorchFile> got =
      formats::torch::TorchFile::OpenPath(out + "/zero/embed.weight/exp_avg_sq.pt");
  ASSERT_TRUE(got.ok());
  absl::StatusOr<Buffer> bytes = got->TensorBytes(got->root().tensor());
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(bytes->AsStringView(), want->AsStringView());
  EXPECT_TRUE(got->Verify().ok());
}

}  // namespace
}  // namespace ucp::testing
