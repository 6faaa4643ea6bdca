#include <cstdlib>
#include <fstream>
#include <sstream>

#include "cli/commands/inspect_command.h"
#include "formats/base/scratch_dir_testutil.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace ucp::cli {
namespace {

std::string Fixture(const std::string& rel) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return std::string(root ? root : ".") + "/fixtures/" + rel;
}

struct Result {
  int code;
  std::string out, err;
};

Result Inspect(InspectOptions o) {
  std::ostringstream out, err;
  int code = RunInspect(o, out, err);
  return {code, out.str(), err.str()};
}

TEST(InspectCommandTest, TorchTreeText) {
  Result r = Inspect(
      {.path = Fixture("deepspeed/s2_fp32_dp2/checkpoint/global_step5/mp_rank_00_model_states.pt"),
       .values = 2});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("torch.save zip"), std::string::npos);
  EXPECT_NE(r.out.find("  module: OrderedDict (18 keys)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("embed.weight: tensor f32 [61, 24]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("global_steps: 5"), std::string::npos);
  EXPECT_NE(r.out.find("embed.weight: torch.Size([61, 24])"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "");
}

TEST(InspectCommandTest, TorchJsonAndVerify) {
  Result r =
      Inspect({.path = Fixture(
                   "deepspeed/s1_bf16opt_dp4/checkpoint/global_step5/mp_rank_00_model_states.pt"),
               .values = 3,
               .json = true,
               .verify = true});
  ASSERT_EQ(r.code, 0) << r.err;
  auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["format"], "torch");
  EXPECT_EQ(doc["verified"], true);
  auto module = doc["tree"]["dict"][0];
  EXPECT_EQ(module[0], "module");
  auto first_tensor = module[1]["odict"][0][1]["tensor"];
  EXPECT_EQ(first_tensor["dtype"], "bf16");
  EXPECT_EQ(first_tensor["values"].size(), 3u);
}

TEST(InspectCommandTest, ErrorsAreOneLineNamingTheFile) {
  const testutil::ScratchDir scratch;
  const std::string path = scratch.File("not_a_checkpoint.pt");
  std::ofstream(path) << "definitely not a zip";
  Result r = Inspect({.path = path});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(path), std::string::npos);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);
  Result missing = Inspect({.path = "/nonexistent/x.pt"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("/nonexistent/x.pt"), std::string::npos);
}

TEST(InspectCommandTest, VerifyCatchesAFlippedTensorByte) {
  std::string src =
      Fixture("deepspeed/s2_fp32_dp2/checkpoint/global_step5/mp_rank_00_model_states.pt");
  const testutil::ScratchDir scratch;
  const std::string path = scratch.File("flipped.pt");
  std::ifstream in(src, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  bytes[bytes.size() / 2] ^= 0x01;  // inside the flat fp32 buffer, well after data.pkl
  std::ofstream(path, std::ios::binary) << bytes;
  EXPECT_EQ(Inspect({.path = path}).code, 0);  // like torch.load: no CRC check without --verify
  Result r = Inspect({.path = path, .verify = true});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("CRC"), std::string::npos) << r.err;
  // The table names the bad record; the good ones say ok.
  EXPECT_NE(r.out.find("  MISMATCH mp_rank_00_model_states/data/2\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  ok       mp_rank_00_model_states/data.pkl\n"), std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("verify: OK"), std::string::npos);
}

// --verify prints what the README promises: every record's offset, size and CRC-32.
TEST(InspectCommandTest, VerifyPrintsTheRecordTable) {
  Result r = Inspect(
      {.path = Fixture("deepspeed/s2_fp32_dp2/checkpoint/global_step5/mp_rank_00_model_states.pt"),
       .verify = true});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(
      r.out.find(
          "records (payload offset, size, CRC-32 from the central directory, check):\n"
          "           128         3737  5b3a2572  ok       mp_rank_00_model_states/data.pkl\n"),
      std::string::npos)
      << r.out;
  EXPECT_NE(
      r.out.find("        33920            2  55679ed1  ok       mp_rank_00_model_states/version\n"
                 "verify: OK (5 records: CRC-32s match, sizes and offsets consistent)\n"),
      std::string::npos)
      << r.out;
  r = Inspect(
      {.path = Fixture("deepspeed/s2_fp32_dp2/checkpoint/global_step5/mp_rank_00_model_states.pt"),
       .verify = true,
       .max_items = 2});
  EXPECT_NE(r.out.find("  ... 3 more, all ok (--max-items 0 lists every record)\n"),
            std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace ucp::cli
