// `ucp train` with AutoTP against DeepSpeed's AutoTP runs (fixtures/deepspeed_tp: a Hugging Face
// Llama trained by DeepSpeed at tp 2, ZeRO-1/2, fp32 / bf16), on real processes and Gloo:
//   * Resume fidelity at tp 2: global_step5 loaded at tp 2 x every dp DeepSpeed resumed at (from
//     its ZeRO folder and from its UCP), steps 6-8 on the fixture recipe: DeepSpeed's losses,
//     fp32 within 1e-5 (bf16 1e-2; DeepSpeed's own bf16 resume at dp 2 moves 7.3e-4). The tp 1
//     loads (which DeepSpeed cannot do) are train_fidelity_test.cc's LlamaResumeTest.
//   * Independence of tp: one seeded Llama trained at tp 1, 2 and 4 on 4 ranks (tp 4 leaves two
//     ranks without KV heads): the same fp32 losses.
//   * Load-then-save identity at tp 2: DeepSpeed's re-saves after its universal load, bitwise.
//   * What is refused by name: tp with ZeRO-3, tp not dividing the world.
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "formats/base/scratch_dir_testutil.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/dist/train_testutil.h"
#include "tests/integration/convert_testutil.h"

namespace ucp {
namespace {

using json = nlohmann::json;
using namespace ::ucp::train_test;  // NOLINT: the shared helpers

std::string TpFixture(const std::string& name) {
  return absl::StrCat(std::getenv("UCP_SOURCE_DIR"), "/fixtures/deepspeed_tp/", name);
}

// The case's DeepSpeed config at tp x dp (global batch 8) and its config.json, in `dir`.
std::vector<std::string> TpArgs(const json& m, int tp, int dp, const std::string& dir) {
  json cfg = m["ds_config"];
  cfg["train_micro_batch_size_per_gpu"] = 8 / dp;
  cfg["tensor_parallel"] = {{"autotp_size", tp}};
  if (tp == 1) cfg.erase("tensor_parallel");
  WriteJson(dir + "/ds.json", cfg);
  WriteJson(dir + "/model.json", m["model"]["hf_config"]);
  std::vector<std::string> args = BaseArgs(tp * dp, dir);
  for (const char* a : {"--seq-len", "8"}) args.push_back(a);
  return args;
}

class AutoTpResumeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(AutoTpResumeTest, LossesMatchDeepSpeedAtTp2) {
  const json m = ReadJson(TpFixture(GetParam()) + "/manifest.json");
  const bool bf16 = m["ds_config"].contains("bf16");
  testing::ScratchDir scratch("train_autotp");
  int checked = 0;
  for (const json& r : m["resume"]) {
    if (r["tp"] != 2 || !r.value("ok", false)) continue;
    const int dp = r["dp"];
    for (const char* src : {"/checkpoint", "/checkpoint/global_step5_universal"}) {
      SCOPED_TRACE(absl::StrCat(GetParam(), src, " at tp 2 x dp ", dp));
      std::vector<std::string> args = TpArgs(m, 2, dp, scratch.path());
      for (const char* a : {"--data", "recipe:1234", "--train-steps", "3", "--load"})
        args.push_back(a);
      args.push_back(TpFixture(GetParam()) + src);
      if (std::string(src) == "/checkpoint") {
        args.push_back("--load-tag");
        args.push_back("global_step5");
      }
      TrainRun run = Train(args, scratch.path());
      ASSERT_EQ(run.code, 0) << run.err;
      for (const char* step : {"6", "7", "8"}) {
        EXPECT_NEAR(run.metrics["losses"][step].get<double>(),
                    r["losses_resumed"][step].get<double>(), bf16 ? 1e-2 : 1e-5)
            << "step " << step;
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, AutoTpResumeTest,
                         ::testing::Values("autotp_llama_s1_fp32_tp2_dp1",
                                           "autotp_llama_s2_fp32_tp2_dp2",
                                           "autotp_llama_s2_bf16_tp2_dp1"));

// `--train-steps 0 --save` at tp 2 x dp: DeepSpeed's re-save right after its universal load at
// that topology (resume_tp2_dpD/checkpoint/global_step5): every mp_rank_XX model-states file and
// zero_pp_rank_D_mp_rank_XX optimizer file, value trees equal but ds_config / ds_version,
// tensors bitwise.
struct TpGolden {
  std::string name;
  int dp;
};

class AutoTpResaveTest : public ::testing::TestWithParam<TpGolden> {};

TEST_P(AutoTpResaveTest, TrainStepsZeroWritesDeepSpeedsResave) {
  const TpGolden& c = GetParam();
  const std::string root = TpFixture(c.name);
  const json m = ReadJson(root + "/manifest.json");
  testing::ScratchDir scratch("train_autotp_resave");
  std::vector<std::string> args = TpArgs(m, 2, c.dp, scratch.path());
  for (const std::string& a :
       {std::string("--train-steps"), std::string("0"), std::string("--load"), root + "/checkpoint",
        std::string("--load-tag"), std::string("global_step5"), std::string("--save"),
        scratch.path() + "/out", std::string("--save-tag"), std::string("global_step5")})
    args.push_back(a);
  TrainRun r = Train(args, scratch.path());
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string golden = absl::StrCat(root, "/resume_tp2_dp", c.dp, "/checkpoint/global_step5");
  const std::string ours = scratch.path() + "/out/global_step5";
  const std::set<std::string> excluded = {"ds_config", "ds_version",
                                          "optimizer_state_dict/ds_version"};
  ExpectSameFiles(ours, golden, excluded);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, AutoTpResaveTest,
                         ::testing::Values(TpGolden{"autotp_llama_s1_fp32_tp2_dp1", 1},
                                           TpGolden{"autotp_llama_s1_fp32_tp2_dp1", 2},
                                           TpGolden{"autotp_llama_s2_fp32_tp2_dp2", 1},
                                           TpGolden{"autotp_llama_s2_bf16_tp2_dp1", 1},
                                           TpGolden{"autotp_llama_s2_bf16_tp2_dp1", 2}),
                         [](const ::testing::TestParamInfo<TpGolden>& p) {
                           return absl::StrCat(p.param.name, "_dp", p.param.dp);
                         });

TEST(AutoTpTopology, LossesDoNotDependOnTp) {
  const json m = ReadJson(TpFixture("autotp_llama_s2_fp32_tp2_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_autotp_tp");
  std::vector<json> losses;
  for (int tp : {1, 2, 4}) {
    SCOPED_TRACE(absl::StrCat("tp ", tp));
    std::vector<std::string> args = TpArgs(m, tp, 4 / tp, scratch.path());
    for (const char* a : {"--data", "recipe:5", "--train-steps", "3", "--seed", "9"})
      args.push_back(a);
    TrainRun r = Train(args, scratch.path());
    ASSERT_EQ(r.code, 0) << r.err;
    losses.push_back(r.metrics["losses"]);
  }
  ExpectSameLosses(losses, {"1", "2", "3"});
}

// A checkpoint ucp train saved at tp 2 x dp 2 converts to UCP (`ucp convert`, AutoTP's
// universal_checkpoint_info merges the slices) and resumes from the UCP at tp 4 x dp 1 and at
// tp 1 x dp 2 on the losses of the uninterrupted tp-2 run.
TEST(AutoTpTopology, ASavedTpCheckpointConvertsAndResumesAtAnotherTp) {
  const json m = ReadJson(TpFixture("autotp_llama_s2_fp32_tp2_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_autotp_convert");
  auto run = [&](int tp, int dp, std::vector<std::string> more) {
    std::vector<std::string> args = TpArgs(m, tp, dp, scratch.path());
    for (const char* a : {"--data", "recipe:5", "--seed", "9"}) args.push_back(a);
    for (std::string& a : more) args.push_back(std::move(a));
    return Train(args, scratch.path());
  };
  TrainRun straight = run(2, 2, {"--train-steps", "4"});
  ASSERT_EQ(straight.code, 0) << straight.err;
  ASSERT_EQ(run(2, 2, {"--train-steps", "2", "--save", scratch.path() + "/ck"}).code, 0);
  const std::string ucp = scratch.path() + "/ck_universal";
  const std::string cmd = absl::StrCat("'", std::getenv("UCP_BIN"), "' convert '", scratch.path(),
                                       "/ck' '", ucp, "' --no-fsync >/dev/null 2>&1");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  for (auto [tp, dp] : {std::pair{4, 1}, std::pair{1, 2}}) {
    SCOPED_TRACE(absl::StrCat("tp ", tp, " x dp ", dp));
    TrainRun resumed = run(tp, dp, {"--train-steps", "2", "--load", ucp});
    ASSERT_EQ(resumed.code, 0) << resumed.err;
    for (const char* step : {"3", "4"})
      EXPECT_NEAR(resumed.metrics["losses"][step].get<double>(),
                  straight.metrics["losses"][step].get<double>(), 1e-5)
          << "step " << step;
  }
}

TEST(AutoTpErrors, RefusedByName) {
  const json m = ReadJson(TpFixture("autotp_llama_s2_fp32_tp2_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_autotp_errors");
  struct Case {
    int tp, world, stage;
    bool save;
    std::string message;
  };
  for (const Case& c : {Case{2, 2, 3, false, "with `zero_optimization.stage` 3"},
                        Case{3, 4, 2, false, "does not divide the world size 4"}}) {
    SCOPED_TRACE(c.message);
    std::vector<std::string> args = TpArgs(m, c.tp, 1, scratch.path());
    json cfg = ReadJson(scratch.path() + "/ds.json");
    cfg["zero_optimization"]["stage"] = c.stage;
    cfg.erase("train_micro_batch_size_per_gpu");  // the batch rule derives it
    cfg.erase("gradient_accumulation_steps");
    cfg["train_batch_size"] = 8;
    WriteJson(scratch.path() + "/ds.json", cfg);
    args[1] = std::to_string(c.world);
    for (const char* a : {"--data", "recipe:1", "--train-steps", "1"}) args.push_back(a);
    if (c.save) {
      args.push_back("--save");
      args.push_back(scratch.path() + "/out");
    }
    TrainRun r = Train(args, scratch.path());
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace ucp
