// `ucp train` with AutoSP (Ulysses sequence parallelism, deepspeed-runtime.md §3) on real
// processes and Gloo: each SP rank holds S/P positions, attention exchanges them for all
// positions of N/P heads (KV heads repeated when P > N_kv), ZeRO partitions over every rank.
//   * Independence of sp: one seeded Llama (8 heads, 2 KV heads) trained at sp 1, 2 and 4 on 4
//     ranks with --sp-grad-divisor exact: the same fp32 losses and gradient norms.
//   * DeepSpeed's divisor (the default): at ZeRO-2 the SP-summed gradients are divided by dp only
//     (§3.6), so the step-1 gradient norm is sp times the exact one; at ZeRO-3 DeepSpeed divides
//     by dp * sp and the norm is the exact one.
//   * An SP checkpoint is a data-parallel one: saved at sp 2, resumed at sp 1 it continues the
//     uninterrupted sp-2 run.
//   * SP x TP x DP: the same losses; a tp 2 x sp 2 checkpoint resumes at tp 1 x sp 1.
//   * Refused by name: heads not divisible by sp, sp with a model AutoSP does not cover.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "formats/base/scratch_dir_testutil.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/dist/train_testutil.h"

namespace ucp {
namespace {

using json = nlohmann::json;
using namespace ::ucp::train_test;  // NOLINT: the shared helpers

const json kLlama8 = {
    {"model_type", "llama"},       {"vocab_size", 53},       {"hidden_size", 32},
    {"intermediate_size", 40},     {"num_hidden_layers", 2}, {"num_attention_heads", 8},
    {"num_key_value_heads", 2},    {"head_dim", 4},          {"max_position_embeddings", 64},
    {"tie_word_embeddings", false}};

// `world` ranks (4 by default) at sequence_parallel_size sp, autotp_size tp and ZeRO `stage`,
// seeded, on the recipe.
std::vector<std::string> SpArgs(int sp, int stage, const std::string& dir,
                                const json& model = kLlama8, int tp = 1, int world = 4) {
  json cfg = {{"train_batch_size", 8},
              {"gradient_clipping", 1.0},
              {"zero_optimization", {{"stage", stage}}},
              {"optimizer", {{"type", "AdamW"}, {"params", {{"lr", 0.01}, {"torch_adam", true}}}}}};
  if (sp > 1) cfg["sequence_parallel_size"] = sp;
  if (tp > 1) cfg["tensor_parallel"] = {{"autotp_size", tp}};
  WriteJson(dir + "/ds.json", cfg);
  WriteJson(dir + "/model.json", model);
  std::vector<std::string> args = BaseArgs(world, dir);
  for (const char* a : {"--seq-len", "8", "--data", "recipe:5", "--seed", "9"}) args.push_back(a);
  return args;
}

TEST(AutoSp, LossesDoNotDependOnSp) {
  testing::ScratchDir scratch("train_autosp");
  std::vector<json> runs;
  for (int sp : {1, 2, 4}) {
    SCOPED_TRACE(absl::StrCat("sp ", sp));
    std::vector<std::string> args = SpArgs(sp, 2, scratch.path());
    for (const char* a : {"--train-steps", "3", "--sp-grad-divisor", "exact"}) args.push_back(a);
    TrainRun r = Train(args, scratch.path());
    ASSERT_EQ(r.code, 0) << r.err;
    runs.push_back(r.metrics);
  }
  for (const char* step : {"1", "2", "3"}) {
    for (size_t i = 1; i < runs.size(); ++i) {
      EXPECT_NEAR(runs[i]["losses"][step].get<double>(), runs[0]["losses"][step].get<double>(),
                  1e-5)
          << "step " << step;
      EXPECT_NEAR(runs[i]["grad_norm"][step].get<double>(),
                  runs[0]["grad_norm"][step].get<double>(), 1e-5)
          << "step " << step;
    }
  }
}

// SP x TP x DP: rank = (dp * sp + sp_rank) * tp + tp_rank; Ulysses exchanges each TP rank's heads
// over its SP group and ZeRO partitions over the TP lane. tp 2 x sp 2 (4 ranks) and
// dp 2 x sp 2 x tp 2 (8 ranks) give the losses of plain data parallelism.
TEST(AutoSp, SpTimesTpTimesDpGivesTheSameLosses) {
  testing::ScratchDir scratch("train_autosp_tp");
  std::vector<json> losses;
  struct Topo {
    int sp, tp, world;
  };
  for (const Topo& t : {Topo{1, 1, 4}, Topo{2, 2, 4}, Topo{2, 2, 8}}) {
    SCOPED_TRACE(absl::StrCat("sp ", t.sp, " tp ", t.tp, " world ", t.world));
    std::vector<std::string> args = SpArgs(t.sp, 1, scratch.path(), kLlama8, t.tp, t.world);
    for (const char* a : {"--train-steps", "3", "--sp-grad-divisor", "exact"}) args.push_back(a);
    TrainRun r = Train(args, scratch.path());
    ASSERT_EQ(r.code, 0) << r.err;
    losses.push_back(r.metrics["losses"]);
  }
  ExpectSameLosses(losses, {"1", "2", "3"});
}

// Saved at tp 2 x sp 2, the checkpoint is AutoTP's (two mp_rank files, ZeRO shards over the lane's
// two SP ranks) and resumes at tp 1 x sp 1 on the losses of the uninterrupted run.
TEST(AutoSp, ASpTimesTpCheckpointResumesAtTp1Sp1) {
  testing::ScratchDir scratch("train_autosp_tp_ckpt");
  auto with = [&](std::vector<std::string> args, std::vector<std::string> more) {
    for (std::string& a : more) args.push_back(std::move(a));
    return args;
  };
  const std::vector<std::string> exact = {"--sp-grad-divisor", "exact"};
  TrainRun straight = Train(
      with(SpArgs(2, 2, scratch.path(), kLlama8, 2), {"--train-steps", "3", exact[0], exact[1]}),
      scratch.path());
  ASSERT_EQ(straight.code, 0) << straight.err;
  ASSERT_EQ(
      Train(with(SpArgs(2, 2, scratch.path(), kLlama8, 2),
                 {"--train-steps", "2", exact[0], exact[1], "--save", scratch.path() + "/ck"}),
            scratch.path())
          .code,
      0);
  for (const char* f : {"mp_rank_00_model_states.pt", "mp_rank_01_model_states.pt",
                        "zero_pp_rank_1_mp_rank_01_optim_states.pt"})
    EXPECT_TRUE(std::filesystem::exists(scratch.path() + "/ck/global_step2/" + f)) << f;
  TrainRun resumed = Train(
      with(SpArgs(1, 2, scratch.path()), {"--train-steps", "1", "--load", scratch.path() + "/ck"}),
      scratch.path());
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_NEAR(resumed.metrics["losses"]["3"].get<double>(),
              straight.metrics["losses"]["3"].get<double>(), 1e-5);
}

TEST(AutoSp, DeepSpeedsGradientDivisorPerStage) {
  testing::ScratchDir scratch("train_autosp_divisor");
  for (int stage : {2, 3}) {
    SCOPED_TRACE(absl::StrCat("stage ", stage));
    std::vector<double> norms;
    for (const char* mode : {"exact", "deepspeed"}) {
      std::vector<std::string> args = SpArgs(2, stage, scratch.path());
      for (const char* a : {"--train-steps", "1", "--sp-grad-divisor"}) args.push_back(a);
      args.push_back(mode);
      TrainRun r = Train(args, scratch.path());
      ASSERT_EQ(r.code, 0) << r.err;
      norms.push_back(r.metrics["grad_norm"]["1"].get<double>());
    }
    EXPECT_NEAR(norms[1], (stage == 3 ? 1.0 : 2.0) * norms[0], 1e-5 * norms[1]);
  }
}

TEST(AutoSp, ACheckpointSavedAtSp2ResumesAtSp1) {
  testing::ScratchDir scratch("train_autosp_ckpt");
  std::vector<std::string> args = SpArgs(2, 2, scratch.path());
  for (const std::string& a : {std::string("--train-steps"), std::string("3"),
                               std::string("--sp-grad-divisor"), std::string("exact")})
    args.push_back(a);
  TrainRun straight = Train(args, scratch.path());
  ASSERT_EQ(straight.code, 0) << straight.err;
  args = SpArgs(2, 2, scratch.path());
  for (const std::string& a :
       {std::string("--train-steps"), std::string("2"), std::string("--sp-grad-divisor"),
        std::string("exact"), std::string("--save"), scratch.path() + "/ck"})
    args.push_back(a);
  ASSERT_EQ(Train(args, scratch.path()).code, 0);
  args = SpArgs(1, 2, scratch.path());
  for (const std::string& a : {std::string("--train-steps"), std::string("1"),
                               std::string("--load"), scratch.path() + "/ck"})
    args.push_back(a);
  TrainRun resumed = Train(args, scratch.path());
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_NEAR(resumed.metrics["losses"]["3"].get<double>(),
              straight.metrics["losses"]["3"].get<double>(), 1e-5);
}

TEST(AutoSp, RefusedByName) {
  testing::ScratchDir scratch("train_autosp_errors");
  json six = kLlama8;
  six["num_attention_heads"] = 6;
  six["hidden_size"] = 24;
  std::vector<std::string> args = SpArgs(4, 2, scratch.path(), six);
  for (const char* a : {"--train-steps", "1"}) args.push_back(a);
  TrainRun r = Train(args, scratch.path());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("Ulysses splits the 6 attention heads"), std::string::npos) << r.err;
  args = SpArgs(2, 2, scratch.path(), kTinyLm);
  for (const char* a : {"--train-steps", "1"}) args.push_back(a);
  r = Train(args, scratch.path());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("AutoSP is implemented for the Hugging Face decoders"), std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace ucp
