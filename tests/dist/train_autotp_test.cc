// `ucp train` with AutoTP against DeepSpeed's AutoTP runs (fixtures/deepspeed_tp: a Hugging Face
// Llama trained by DeepSpeed at tp 2, ZeRO-1/2, fp32 / bf16), on real processes and Gloo:
//   * Resume fidelity at tp 2: global_step5 loaded at tp 2 x every dp DeepSpeed resumed at (from
//     its ZeRO folder and from its UCP), steps 6-8 on the fixture recipe: DeepSpeed's losses,
//     fp32 within 1e-5 (bf16 1e-2; DeepSpeed's own bf16 resume at dp 2 moves 7.3e-4). The tp 1
//     loads (which DeepSpeed cannot do) are train_fidelity_test.cc's LlamaResumeTest.
//   * Independence of tp: one seeded Llama trained at tp 1, 2 and 4 on 4 ranks (tp 4 leaves two
//     ranks without KV heads): the same fp32 losses.
//   * Load-then-save identity at tp 2: DeepSpeed's re-saves after its universal load, bitwise.
//   * Partitioning sources (§2.2): preset_model (alone, with a custom skip spec first, with a
//     row-parallel lm_head spec), a
//     partition_config with sub-parameter shapes ([gate_r ; up_r] and the row analogue on
//     down_proj), the heuristic of a model without a tp_plan, Qwen3's q/k norms under a
//     grad_allreduce spec: fp32 losses and gradient norms at tp 2 equal tp 1's from the same
//     seeded init; a sub-parameter save at tp 2 merges back (ucp convert equals the tp-1 UCP,
//     the tp-1 load) and reloads at tp 2; a sub-parameter bias (Qwen2 k_proj) resumes at tp 2;
//     tp 2 x sp 2 with the attention replicated equals tp 1 (Ulysses on the partition's heads).
//   * What is refused by name: tp with ZeRO-3, tp not dividing the world, a partition the
//     forward cannot run.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <tuple>
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

// q/k/v column, o row, gate / up as two sub-parameters each ([gate_r ; up_r]), down_proj's
// input split the same way (row, `[-1, 2]`), lm_head column with a gathered output.
const json kSubParamSpecs = {
    {"use_default_specs", false},
    {"layer_specs",
     {{{"patterns", {R"(.*\.self_attn\.o_proj\.weight$)"}}, {"partition_type", "row"}},
      {{"patterns", {R"(.*\.self_attn\.[qkv]_proj\.weight$)"}}},
      {{"patterns", {R"(.*\.mlp\.(gate|up)_proj\.weight$)"}}, {"shape", {2, -1}}},
      {{"patterns", {R"(.*\.mlp\.down_proj\.weight$)"}},
       {"partition_type", "row"},
       {"shape", {-1, 2}}},
      {{"patterns", {"lm_head"}}, {"gather_output", true}}}}};

// TpArgs at tp x 1 with `tensor_parallel` extended by `tp_keys` and the model's config.json
// patched by `model_patch`.
std::vector<std::string> SourceArgs(const json& m, int tp, const json& tp_keys,
                                    const json& model_patch, const std::string& dir) {
  std::vector<std::string> args = TpArgs(m, tp, 1, dir);
  json cfg = ReadJson(dir + "/ds.json");
  if (tp > 1) cfg["tensor_parallel"].update(tp_keys);
  WriteJson(dir + "/ds.json", cfg);
  json model = m["model"]["hf_config"];
  model.update(model_patch);
  WriteJson(dir + "/model.json", model);
  return args;
}

TEST(AutoTpSources, PresetPartitionConfigAndHeuristicMatchTp1) {
  const json m = ReadJson(TpFixture("autotp_llama_s2_fp32_tp2_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_autotp_sources");
  struct Run {
    int tp;
    json tp_keys, model_patch;
    const char* what;
  };
  const json no_plan = {{"base_model_tp_plan", nullptr}};
  // Custom specs come first: the MLPs stay replicated (no collectives), attention is split.
  const json skip_mlp = {
      {"layer_specs", {{{"patterns", {R"(.*\.mlp\..*)"}}, {"partition_type", "skip"}}}}};
  // DeepSpeed's LinearAllreduceWithReplicatedInput: lm_head's input columns split.
  const json row_head = {{"layer_specs", {{{"patterns", {"lm_head"}}, {"partition_type", "row"}}}}};
  std::vector<json> losses, norms;
  for (const Run& run : {Run{1, json::object(), json::object(), "tp 1"},
                         Run{2, {{"preset_model", "llama"}}, json::object(), "preset llama"},
                         Run{2,
                             {{"partition_config", kSubParamSpecs}},
                             json::object(),
                             "partition_config with sub-parameters"},
                         Run{2,
                             {{"preset_model", "llama"}, {"partition_config", skip_mlp}},
                             json::object(),
                             "preset with the MLPs replicated"},
                         Run{2,
                             {{"preset_model", "llama"}, {"partition_config", row_head}},
                             json::object(),
                             "preset with a row-parallel lm_head"},
                         Run{2, json::object(), no_plan, "heuristic"}}) {
    SCOPED_TRACE(run.what);
    std::vector<std::string> args =
        SourceArgs(m, run.tp, run.tp_keys, run.model_patch, scratch.path());
    for (const char* a : {"--data", "recipe:5", "--train-steps", "6", "--seed", "9"})
      args.push_back(a);
    TrainRun r = Train(args, scratch.path());
    ASSERT_EQ(r.code, 0) << r.err;
    losses.push_back(r.metrics["losses"]);
    norms.push_back(r.metrics["grad_norm"]);
  }
  // The warmup's lr is 0 for steps 1-2: steps 4-6 see trained weights; the norms every gradient.
  ExpectSameLosses(losses, {"1", "2", "3", "4", "5", "6"});
  ExpectSameLosses(norms, {"1", "2", "3", "4", "5", "6"});
}

// Qwen3's q/k norms act on this rank's heads: a skip spec with grad_allreduce sums their gradient
// over TP (DeepSpeed's hook), as the HF plan's replicated_with_grad_allreduce does; both equal
// tp 1. Without it the partition is refused (the ranks' norms would drift apart).
TEST(AutoTpSources, GradAllreduceSpecOnQwen3Norms) {
  const json m = ReadJson(TpFixture("autotp_llama_s2_fp32_tp2_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_autotp_qwen3");
  const json qwen3 = {{"model_type", "qwen3"}, {"base_model_tp_plan", json::object()}};
  const json qk_norms = {{"layer_specs",
                          {{{"patterns", {R"(.*\.self_attn\.[qk]_norm\.weight$)"}},
                            {"partition_type", "skip"},
                            {"grad_allreduce", true}}}}};
  std::vector<json> losses, norms;
  for (const auto& [tp, keys, what] : std::vector<std::tuple<int, json, std::string>>{
           {1, json::object(), "tp 1"},
           {2,
            {{"preset_model", "qwen2"}, {"partition_config", qk_norms}},
            "qwen2 + grad_allreduce"},
           {2, json::object(), "Transformers' qwen3 plan"}}) {
    SCOPED_TRACE(what);
    std::vector<std::string> args = SourceArgs(m, tp, keys, qwen3, scratch.path());
    if (keys.empty()) {  // the HF plan: Transformers' built-in qwen3 plan
      json model = ReadJson(scratch.path() + "/model.json");
      model.erase("base_model_tp_plan");
      WriteJson(scratch.path() + "/model.json", model);
    }
    for (const char* a : {"--data", "recipe:5", "--train-steps", "6", "--seed", "9"})
      args.push_back(a);
    TrainRun r = Train(args, scratch.path());
    ASSERT_EQ(r.code, 0) << r.err;
    losses.push_back(r.metrics["losses"]);
    norms.push_back(r.metrics["grad_norm"]);
  }
  // The warmup's lr is 0 for steps 1-2: steps 4-6 see trained weights; the norms every gradient.
  ExpectSameLosses(losses, {"1", "2", "3", "4", "5", "6"});
  ExpectSameLosses(norms, {"1", "2", "3", "4", "5", "6"});
  std::vector<std::string> args =
      SourceArgs(m, 2, {{"preset_model", "qwen2"}}, qwen3, scratch.path());
  for (const char* a : {"--data", "recipe:5", "--train-steps", "1"}) args.push_back(a);
  TrainRun r = Train(args, scratch.path());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("self_attn.q_norm.weight keeps it replicated without grad_allreduce"),
            std::string::npos)
      << r.err;
}

// A tp-2 save with sub-parameter splits: its universal_checkpoint_info lets `ucp convert` and the
// tp-1 load merge gate / up / down back (the UCP equals the tp-1 run's UCP within 1e-5); the UCP
// reloads at tp 2 under the same specs. Every resume's steps 5-6 equal an uninterrupted tp-1 run's.
TEST(AutoTpSources, SubParamSaveMergesBack) {
  const json m = ReadJson(TpFixture("autotp_llama_s2_fp32_tp2_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_autotp_subparams");
  const std::string dir = scratch.path(), out = dir + "/out", ucp_dir = dir + "/ucp";
  const json tp_keys = {{"partition_config", kSubParamSpecs}};
  auto run = [&](int tp, int steps, std::vector<std::string> extra) {
    std::vector<std::string> args = SourceArgs(m, tp, tp_keys, json::object(), dir);
    for (const std::string& a :
         {std::string("--data"), std::string("recipe:5"), std::string("--seed"), std::string("9"),
          std::string("--train-steps"), std::to_string(steps)})
      args.push_back(a);
    args.insert(args.end(), extra.begin(), extra.end());
    TrainRun r = Train(args, dir);
    EXPECT_EQ(r.code, 0) << r.err;
    return r.metrics["losses"];
  };
  // The warmup's lr is 0 for steps 1-2: the save at step 4 holds trained weights.
  const json straight = run(1, 6, {});
  run(1, 4, {"--save", dir + "/out1", "--save-tag", "global_step4"});
  run(2, 4, {"--save", out, "--save-tag", "global_step4"});
  auto ucp = [&](const std::string& args) {
    const std::string cmd =
        absl::StrCat("'", std::getenv("UCP_BIN"), "' ", args, " >'", dir, "/ucp.txt' 2>&1");
    const int st = std::system(cmd.c_str());
    EXPECT_EQ(st, 0) << args << ": " << std::ifstream(dir + "/ucp.txt").rdbuf();
  };
  ucp(absl::StrCat("convert --no-fsync '", out, "/global_step4' '", ucp_dir, "'"));
  ucp(absl::StrCat("convert --no-fsync '", dir, "/out1/global_step4' '", dir, "/ucp1'"));
  // The merged UCP is the tp-1 run's: weights and moments within fp32 rounding.
  ucp(absl::StrCat("diff --atol 1e-5 '", dir, "/ucp1' '", ucp_dir, "'"));
  struct Resume {
    int tp;
    std::vector<std::string> load;
    const char* what;
  };
  for (const Resume& r : {Resume{1, {"--load", out, "--load-tag", "global_step4"}, "tp 1 <- zero"},
                          Resume{1, {"--load", ucp_dir}, "tp 1 <- ucp"},
                          Resume{2, {"--load", ucp_dir}, "tp 2 <- ucp"}}) {
    SCOPED_TRACE(r.what);
    const json resumed = run(r.tp, 2, r.load);
    ASSERT_TRUE(resumed.contains("6")) << resumed.dump();
    for (const char* step : {"5", "6"})
      EXPECT_NEAR(resumed[step].get<double>(), straight[step].get<double>(), 1e-5) << step;
  }
}

// Qwen2's k_proj with a `[2, -1]` spec: weight and bias cut per sub-parameter (the bias's entry
// published as its own parameter_with_sub_params entry). Not tp 1's function, but DeepSpeed's:
// a step-4 save resumed at tp 2, from the ZeRO folder and from its `ucp convert` UCP, continues
// the uninterrupted tp-2 run exactly.
TEST(AutoTpSources, SubParamBiasResumesAtTp2) {
  const json m = ReadJson(TpFixture("autotp_llama_s2_fp32_tp2_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_autotp_subparam_bias");
  const std::string dir = scratch.path();
  const json tp_keys = {
      {"preset_model", "qwen2"},
      {"partition_config",
       {{"layer_specs",
         {{{"patterns", {R"(.*\.self_attn\.k_proj\.weight$)"}}, {"shape", {2, -1}}}}}}}};
  const json qwen2 = {{"model_type", "qwen2"}};  // q/k/v biases
  auto run = [&](int steps, std::vector<std::string> extra) {
    std::vector<std::string> args = SourceArgs(m, 2, tp_keys, qwen2, dir);
    for (const std::string& a :
         {std::string("--data"), std::string("recipe:5"), std::string("--seed"), std::string("9"),
          std::string("--train-steps"), std::to_string(steps)})
      args.push_back(a);
    args.insert(args.end(), extra.begin(), extra.end());
    TrainRun r = Train(args, dir);
    EXPECT_EQ(r.code, 0) << r.err;
    return r.metrics["losses"];
  };
  const json straight = run(6, {});
  run(4, {"--save", dir + "/out", "--save-tag", "global_step4"});
  const std::string cmd = absl::StrCat("'", std::getenv("UCP_BIN"), "' convert --no-fsync '", dir,
                                       "/out/global_step4' '", dir, "/ucp' >/dev/null 2>&1");
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  for (const std::vector<std::string>& load :
       {std::vector<std::string>{"--load", dir + "/out", "--load-tag", "global_step4"},
        std::vector<std::string>{"--load", dir + "/ucp"}}) {
    SCOPED_TRACE(load[1]);
    const json resumed = run(2, load);
    ASSERT_TRUE(resumed.contains("6")) << resumed.dump();
    for (const char* step : {"5", "6"})
      // Bitwise in practice; a bias merged as a plain split moves the losses by 2e-6.
      EXPECT_NEAR(resumed[step].get<double>(), straight[step].get<double>(), 2e-7) << step;
  }
}

// Ulysses splits each TP rank's heads as the partition leaves them: with the attention replicated
// (only the MLPs split) the 6 heads / 2 KV heads divide by sp 2 on every TP rank, so tp 2 x sp 2
// runs and equals tp 1 (exact SP divisor); the HF plan's 3 / 1 heads per TP rank are refused.
TEST(AutoTpSources, SpTimesTpSplitsThePartitionsHeads) {
  const json m = ReadJson(TpFixture("autotp_llama_s2_fp32_tp2_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_autotp_sp");
  const json mlp_only = {
      {"use_default_specs", false},
      {"layer_specs",
       {{{"patterns", {R"(.*\.mlp\.(gate|up)_proj\.weight$)"}}},
        {{"patterns", {R"(.*\.mlp\.down_proj\.weight$)"}}, {"partition_type", "row"}}}}};
  std::vector<json> losses, norms;
  for (const auto& [tp, keys] : std::vector<std::pair<int, json>>{
           {1, json::object()}, {2, {{"partition_config", mlp_only}}}, {2, json::object()}}) {
    SCOPED_TRACE(keys.dump());
    std::vector<std::string> args = SourceArgs(m, tp, keys, json::object(), scratch.path());
    json cfg = ReadJson(scratch.path() + "/ds.json");
    if (tp > 1) cfg["sequence_parallel_size"] = 2;
    WriteJson(scratch.path() + "/ds.json", cfg);
    args[1] = std::to_string(tp * tp);  // tp 2 x sp 2
    for (const char* a :
         {"--data", "recipe:5", "--train-steps", "6", "--seed", "9", "--sp-grad-divisor", "exact"})
      args.push_back(a);
    TrainRun r = Train(args, scratch.path());
    if (tp > 1 && keys.empty()) {
      EXPECT_EQ(r.code, 1);
      EXPECT_NE(r.err.find("Ulysses splits the 3 attention heads and 1 KV heads of TP rank 0"),
                std::string::npos)
          << r.err;
      continue;
    }
    ASSERT_EQ(r.code, 0) << r.err;
    losses.push_back(r.metrics["losses"]);
    norms.push_back(r.metrics["grad_norm"]);
  }
  ExpectSameLosses(losses, {"1", "2", "3", "4", "5", "6"});
  ExpectSameLosses(norms, {"1", "2", "3", "4", "5", "6"});
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

// Partitions whose forward cannot run are refused before training, naming the parameter: the
// deepseek_v2 preset splits o_proj (row) but finds no q_b_proj / kv_b_proj to split with it;
// a spec on the embedding; a preset for modules ucp does not build (BLOOM's).
TEST(AutoTpErrors, PartitionsTheForwardCannotRunAreRefused) {
  const json m = ReadJson(TpFixture("autotp_llama_s2_fp32_tp2_dp2") + "/manifest.json");
  testing::ScratchDir scratch("train_autotp_partition_errors");
  const json embed = {{"layer_specs", {{{"patterns", {R"(.*embed_tokens\.weight$)"}}}}}};
  for (const auto& [keys, message] : std::vector<std::pair<json, std::string>>{
           {{{"preset_model", "deepseek_v2"}}, "model.layers.0.self_attn.o_proj.weight leaves"},
           {{{"partition_config", embed}}, "splits the embedding model.embed_tokens.weight"},
           {{{"preset_model", "bloom"}}, "preset_model \"bloom\" matches none"}}) {
    SCOPED_TRACE(message);
    std::vector<std::string> args = SourceArgs(m, 2, keys, json::object(), scratch.path());
    for (const char* a : {"--data", "recipe:1", "--train-steps", "1"}) args.push_back(a);
    TrainRun r = Train(args, scratch.path());
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace ucp
