// `ucp inspect DIR` and `ucp diff` over the fixtures, through their Run* functions.
#include "cli/commands/checkpoint_commands.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "cli/commands/convert_command.h"
#include "formats/base/scratch_dir_testutil.h"
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
  EXPECT_THAT(out.str(),
              HasSubstr("16 trainable (7205 elements), 1 frozen, 0 buffers, 1 tied aliases"));
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
  for (const char* other :
       {"s2_fp32_dp4/checkpoint/global_step5_universal", "s2_fp32_dp4/reshard_dp2/checkpoint"}) {
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
  EXPECT_THAT(err.str(),
              HasSubstr("--states: expected one of fp32, exp_avg, exp_avg_sq; got 'nonsense'"));
  // Two dp sizes of the same run agree to ~1e-7 (different reduction order), not bitwise.
  std::ostringstream out2, err2;
  DiffCommandOptions t;
  t.a = Case("s2_fp32_dp4/checkpoint");
  t.b = Case("s2_fp32_dp2/checkpoint");
  t.states = {"fp32"};
  t.atol = 1e-3;
  EXPECT_EQ(RunDiff(t, out2, err2), 0) << out2.str() << err2.str();
}

// Header (a: / b:) first, entries with relative error and the count of differing elements, the
// summary last; --summary leaves the entries out.
TEST(Diff, HeaderFirstRelativeErrorAndCounts) {
  DiffCommandOptions o;
  o.a = Case("s2_fp32_dp4/checkpoint");
  o.b = Case("s2_fp32_dp2/checkpoint");
  o.states = {"fp32"};
  std::ostringstream out, err;
  EXPECT_EQ(RunDiff(o, out, err), 1) << err.str();
  const std::string text = out.str();
  EXPECT_EQ(text.rfind("a: zero " + o.a + "\nb: zero " + o.b + "\n", 0), 0u) << text;
  EXPECT_THAT(text, HasSubstr("  different  embed.weight [fp32]  max abs 5.96046e-08, max rel "));
  EXPECT_THAT(text, ::testing::ContainsRegex(
                        "embed.weight \\[fp32\\].* [1-9][0-9]* of 1464 elements differ"));
  const std::string last = text.substr(text.rfind('\n', text.size() - 2) + 1);
  EXPECT_EQ(last, "18 parameters, 18 states compared: 14 different\n");
  o.summary = true;
  std::ostringstream summary;
  EXPECT_EQ(RunDiff(o, summary, err), 1);
  EXPECT_EQ(summary.str(), "a: zero " + o.a + "\nb: zero " + o.b + "\n" + last);
  o.json = true;
  std::ostringstream jout;
  EXPECT_EQ(RunDiff(o, jout, err), 1);
  const nlohmann::json j = nlohmann::json::parse(jout.str());
  const nlohmann::json& e = j["entries"][0];
  EXPECT_EQ(e["name"], "embed.weight");
  EXPECT_EQ(e["numel"], 1464);
  EXPECT_GT(e["num_different"].get<int>(), 0);
  EXPECT_LE(e["num_different"].get<int>(), 1464);
  EXPECT_GT(e["max_rel_diff"].get<double>(), 0);
  EXPECT_LT(e["max_rel_diff"].get<double>(), 1e-3);
  EXPECT_EQ(j["counts"]["different"],
            static_cast<int>(j["entries"].size()) - j["counts"]["equal"].get<int>());
}

TEST(Diff, WeightsOnlyEntriesAreLabelled) {
  DiffCommandOptions o;
  o.a = Case("s2_fp32_dp2/checkpoint");
  o.b = Case("s2_fp32_dp2/fp32/pytorch_model.bin");
  o.all = true;
  std::ostringstream out, err;
  EXPECT_EQ(RunDiff(o, out, err), 0) << err.str();
  EXPECT_THAT(out.str(), HasSubstr("b: bin " + o.b +
                                   " (weights only: its tensors are compared with the other "
                                   "side's fp32)\n"));
  EXPECT_THAT(out.str(), HasSubstr("  equal  embed.weight [fp32, weights only]\n"));
  o.json = true;
  std::ostringstream jout;
  EXPECT_EQ(RunDiff(o, jout, err), 0);
  const nlohmann::json j = nlohmann::json::parse(jout.str());
  EXPECT_EQ(j["weights_only"], true);
  EXPECT_EQ(j["entries"][0]["weights_only"], true);
}

// A file missing from a UCP that ucp wrote (its manifest lists it) is an entry, not an abort.
TEST(Diff, FileMissingFromAUcpIsMissingInB) {
  namespace fs = std::filesystem;
  const testutil::ScratchDir scratch;
  const fs::path& tmp = scratch.path();
  ConvertCommandOptions c;
  c.input = Case("s2_fp32_dp2/checkpoint/global_step5");
  c.output = (tmp / "ucp").string();
  c.no_fsync = true;
  std::ostringstream cout_, cerr_;
  ASSERT_EQ(RunConvert(c, cout_, cerr_), 0) << cerr_.str();
  fs::remove(tmp / "ucp/zero/head_bias/exp_avg.pt");
  fs::remove_all(tmp / "ucp/zero/ln_f.bias");
  DiffCommandOptions o;
  o.a = c.input;
  o.b = c.output;
  std::ostringstream out, err;
  EXPECT_EQ(RunDiff(o, out, err), 1) << err.str();
  EXPECT_EQ(err.str(), "");
  EXPECT_THAT(out.str(), HasSubstr("  missing_in_b  head_bias [exp_avg]\n"));
  EXPECT_THAT(out.str(), HasSubstr("  missing_in_b  ln_f.bias  (param_shapes of " + o.b +
                                   " declares it, but zero/ln_f.bias is missing)\n"));
  EXPECT_THAT(out.str(), HasSubstr("2 missing_in_b"));
}

TEST(InspectCheckpoint, JsonStatesAreAListAndDtypesUseTheOneVocabulary) {
  std::ostringstream out, err;
  InspectCheckpointOptions o;
  o.path = Case("s2_bf16_dp2/checkpoint");
  o.json = true;
  ASSERT_EQ(RunInspectCheckpoint(o, out, err), 0) << err.str();
  const nlohmann::json j = nlohmann::json::parse(out.str());
  EXPECT_EQ(j["schema_version"], 1);
  EXPECT_EQ(j["command"], "inspect");
  EXPECT_EQ(j["master_dtype"], "f32");
  for (const nlohmann::json& p : j["params"]) {
    ASSERT_TRUE(p["states"].is_array()) << p.dump();
    if (p["role"] == "trainable") {
      EXPECT_EQ(p["states"], nlohmann::json({"fp32", "exp_avg", "exp_avg_sq"}));
      EXPECT_EQ(p["dtype"], "f32");
    }
  }
}

}  // namespace
}  // namespace ucp::cli
