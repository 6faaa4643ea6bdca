#include "cli/commands/convert_command.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "formats/base/byte_size.h"
#include "formats/base/scratch_dir_testutil.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace ucp::cli {
namespace {

namespace fs = std::filesystem;

std::string Tag(const std::string& name) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return std::string(root ? root : ".") + "/fixtures/deepspeed/" + name +
         "/checkpoint/global_step5";
}

struct Result {
  int code;
  std::string out, err;
};

Result Convert(const ConvertCommandOptions& o) {
  std::ostringstream out, err;
  int code = RunConvert(o, out, err);
  return {code, out.str(), err.str()};
}

TEST(ConvertCommandTest, ByteSizes) {
  EXPECT_EQ(*ParseByteSize("256MiB"), uint64_t{256} << 20);
  EXPECT_EQ(*ParseByteSize("256M"), uint64_t{256} << 20);
  EXPECT_EQ(*ParseByteSize("1.5G"), uint64_t{3} << 29);
  EXPECT_EQ(*ParseByteSize("64k"), uint64_t{64} << 10);
  EXPECT_EQ(*ParseByteSize("65536"), 65536u);
  EXPECT_EQ(*ParseByteSize(" 2 TiB "), uint64_t{2} << 40);
  for (const char* bad : {"", "0", "-1", "banana", "12X", "MiB", "1e30"}) {
    EXPECT_EQ(ParseByteSize(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ConvertCommandTest, DryRunPrintsThePlanAndWritesNothing) {
  const testutil::ScratchDir scratch;
  const std::string out_dir = scratch.File("dry");
  ConvertCommandOptions o;
  o.input = Tag("autoep_qwen3_s3_fp32_dp4_ep2");
  o.output = out_dir;
  o.dry_run = true;
  Result text = Convert(o);
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("ZeRO-3"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("dry run: nothing written"), std::string::npos);
  o.json = true;
  Result json = Convert(o);
  ASSERT_EQ(json.code, 0) << json.err;
  const nlohmann::json j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["info"]["zero_stage"], 3);
  EXPECT_EQ(j["info"]["autoep_layers"], 2);
  EXPECT_EQ(j["output"], out_dir);
  EXPECT_FALSE(fs::exists(out_dir));
}

TEST(ConvertCommandTest, ConvertsAndReportsJson) {
  const testutil::ScratchDir scratch;
  const std::string root = scratch.path().string();
  ConvertCommandOptions o;
  o.input = Tag("s2_bf16_dp2");
  o.output = root + "/global_step5_universal";
  o.json = true;
  o.no_fsync = true;
  o.keep_temp_folder = true;
  Result r = Convert(o);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("--keep_temp_folder has no effect"), std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["num_files"], 66);
  EXPECT_EQ(j["output"], o.output);
  EXPECT_TRUE(fs::exists(root + "/latest_universal"));
  o.keep_temp_folder = false;
  Result again = Convert(o);
  EXPECT_EQ(again.code, 1);
  EXPECT_EQ(again.err, "error: " + o.output + " already exists (use --force to replace it)\n");
}

TEST(ConvertCommandTest, ErrorsAreOneLine) {
  ConvertCommandOptions o;
  o.input = "/no/such/checkpoint";
  Result r = Convert(o);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  o.input = Tag("s1_fp32_dp2");
  o.memory_limit = "lots";
  r = Convert(o);
  EXPECT_EQ(r.code, 2);  // a usage error, as every bad option value
  EXPECT_NE(r.err.find("--memory-limit: bad size 'lots'"), std::string::npos);
}

}  // namespace
}  // namespace ucp::cli
