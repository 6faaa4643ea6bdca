// `ucp verify` through RunVerify: exit codes, text and JSON output over a fixture and a broken
// copy.
#include "cli/commands/verify_command.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "formats/base/scratch_dir_testutil.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace ucp::cli {
namespace {

namespace fs = std::filesystem;

std::string Fixture(const std::string& sub) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return std::string(root != nullptr ? root : ".") + "/fixtures/deepspeed/" + sub;
}

TEST(VerifyCommand, CleanFixtureExitsZero) {
  std::ostringstream out, err;
  VerifyCommandOptions o;
  o.path = Fixture("s3_fp32_dp2/checkpoint");
  EXPECT_EQ(RunVerify(o, out, err), 0) << out.str() << err.str();
  EXPECT_NE(out.str().find("(zero): 4 files"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("OK"), std::string::npos);
}

TEST(VerifyCommand, BrokenCopyExitsOneAndNamesTheFile) {
  const testutil::ScratchDir scratch;
  const fs::path dir = scratch.path() / "global_step5";
  fs::copy(Fixture("s3_fp32_dp2/checkpoint/global_step5"), dir, fs::copy_options::recursive);
  const fs::path shard = dir / "zero_pp_rank_1_mp_rank_00_optim_states.pt";
  fs::resize_file(shard, fs::file_size(shard) - 100);
  std::ostringstream out, err;
  VerifyCommandOptions o;
  o.path = dir.string();
  o.json = true;
  EXPECT_EQ(RunVerify(o, out, err), 1);
  const nlohmann::json report = nlohmann::json::parse(out.str());
  EXPECT_FALSE(report["ok"].get<bool>());
  ASSERT_GE(report["problems"].size(), 1u);
  EXPECT_EQ(report["problems"][0]["check"], "file");
  EXPECT_EQ(report["problems"][0]["file"], "zero_pp_rank_1_mp_rank_00_optim_states.pt");
}

TEST(VerifyCommand, MissingFolderIsOneErrorLine) {
  std::ostringstream out, err;
  VerifyCommandOptions o;
  o.path = "/nonexistent/ckpt";
  EXPECT_EQ(RunVerify(o, out, err), 1);
  EXPECT_EQ(err.str(), "error: /nonexistent/ckpt: no such file or folder\n");
}

}  // namespace
}  // namespace ucp::cli
