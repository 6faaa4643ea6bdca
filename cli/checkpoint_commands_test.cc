// `ucp inspect DIR` and `ucp diff` over the fixtures, through their Run* functions.
#include "cli/commands/checkpoint_commands.h"

#include <cstdlib>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace ucp::cli {
namespace {

using ::testing::HasSubstr;

std::string Case(const std::string& rel) {
  return std::string(std::getenv("UCP_SOURCE_DIR")) + "/fixtures/deepspeed/" + rel;
}

TEST(InspectCheckpoint, ZeroFolderSummaryAndJson) {
  std::ostringstream out, err;
  InspectCheckpointOptions o;
  o.path = Case("s2_fp32_dp4/checkpoint");
  ASSERT_EQ(RunInspectCheckpoint(o, out, err), 0) << err.str();
  EXPECT_THAT(out.str(), HasSubstr("kind:        zero (ZeRO-2, DeepSpeedZeroOptimizer)"));
  EXPECT_THAT(out.str(), HasSubstr("topology:    dp 4, tp 1, pp 1, ep 1"));
  EXPECT_THAT(out.str(), HasSubstr("16 trainable (7205 elements), 1 frozen, 0 buffers, 1 tied aliases"));
  o.json = true;
  std::ostringstream jout;
  ASSERT_EQ(RunInspectCheckpoint(o, jout, err), 0);
  nlohmann::json j = nlohmann::json::parse(jout.str());
  EXPECT_EQ(j["kind"], "zero");
  EXPECT_EQ(j["zero_stage"], 2);
  EXPECT_EQ(j["step"], 5);
  EXPECT_EQ(j["param_groups"].size(), 2u);
  EXPECT_EQ(j["param_groups"][1]["weight_decay"], 0.0);
  EXPECT_EQ(j["totals"]["trainable"], 16);
  bool tied = false;
  for (const auto& p : j["params"]) tied |= p.value("tied_to", "") == "embed.weight";
  EXPECT_TRUE(tied);
}

TEST(InspectCheckpoint, AutoEpUcpListsExperts) {
  std::ostringstream out, err;
  InspectCheckpointOptions o;
  o.path = Case("autoep_qwen3_s3_fp32_dp4_ep2/checkpoint/global_step5_universal");
  o.json = true;
  ASSERT_EQ(RunInspectCheckpoint(o, out, err), 0) << err.str();
  nlohmann::json j = nlohmann::json::parse(out.str());
  EXPECT_EQ(j["kind"], "universal");
  EXPECT_GT(j["totals"]["experts"].get<int>(), 0);
}

TEST(InspectCheckpoint, NotACheckpointIsOneErrorLine) {
  std::ostringstream out, err;
  InspectCheckpointOptions o;
  o.path = std::string(std::getenv("UCP_SOURCE_DIR")) + "/docs";
  EXPECT_EQ(RunInspectCheckpoint(o, out, err), 1);
  EXPECT_THAT(err.str(), HasSubstr("error: not a checkpoint"));
}

TEST(Diff, ZeroFolderEqualsItsUcpAndReshardGolden) {
  for (const char* other : {"s2_fp32_dp4/checkpoint/global_step5_universal", "s2_fp32_dp4/reshard_dp2/checkpoint"}) {
    std::ostringstream out, err;
    DiffCommandOptions o;
    o.a = Case("s2_fp32_dp4/checkpoint/global_step5");
    o.b = Case(other);
    EXPECT_EQ(RunDiff(o, out, err), 0) << other << "\n" << out.str() << err.str();
    EXPECT_THAT(out.str(), HasSubstr("all bitwise equal"));
  }
}

TEST(Diff, DifferentRunsReportDifferencesAndExit1) {
  std::ostringstream out, err;
  DiffCommandOptions o;
  o.a = Case("s2_fp32_dp4/checkpoint");
  o.b = Case("s1_fp32_dp2/checkpoint");
  o.json = true;
  EXPECT_EQ(RunDiff(o, out, err), 1) << err.str();
  nlohmann::json j = nlohmann::json::parse(out.str());
  EXPECT_FALSE(j["equal"].get<bool>());
  int different = 0;
  for (const auto& e : j["entries"]) different += e["status"] == "different";
  EXPECT_GT(different, 0);
}

TEST(Diff, ToleranceAndStatesAndWeightsOnly) {
  std::ostringstream out, err;
  DiffCommandOptions o;
  o.a = Case("s2_bf16_dp2/checkpoint");
  o.b = Case("s2_bf16_dp2/fp32/pytorch_model.bin");
  EXPECT_EQ(RunDiff(o, out, err), 0) << out.str() << err.str();
  o.states = {"nonsense"};
  EXPECT_EQ(RunDiff(o, out, err), 2);
  EXPECT_THAT(err.str(), HasSubstr("unknown state 'nonsense'"));
  // Two dp sizes of the same run agree to ~1e-7 (different reduction order), not bitwise.
  std::ostringstream out2, err2;
  DiffCommandOptions t;
  t.a = Case("s2_fp32_dp4/checkpoint");
  t.b = Case("s2_fp32_dp2/checkpoint");
  t.states = {"fp32"};
  t.atol = 1e-3;
  EXPECT_EQ(RunDiff(t, out2, err2), 0) << out2.str() << err2.str();
}

}  // namespace
}  // namespace ucp::cli
