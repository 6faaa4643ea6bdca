// `ucp train` with selective activation checkpointing (--activation-checkpointing or DeepSpeed's
// `activation_checkpointing` block; docs/runtime.md, deepspeed-runtime.md §3.8) on real
// processes: the engine re-runs every unit's forward in backward and attention replays its kept
// output, with no model code involved.
//   * Bitwise the same training: per case (ZeRO 0-3; tied embeddings with gradient accumulation;
//     AutoSP; bf16; AutoTP; AutoEP Mixtral; DeepSeek-V3's latent attention; TinyLM, which has no
//     attention) the same losses and gradient norms to the last bit with checkpointing off and
//     on, and byte-identical checkpoint files.
//   * Memory: at S = 1024 no [S, S] activation lives from forward to backward, so the peak RSS
//     drops by more than two [8 heads, S, S] fp32 buffers for a 4-layer Llama.
//   * The config block turns it on; the keys it does not implement are refused by name.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "formats/base/scratch_dir_testutil.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/dist/train_testutil.h"

namespace ucp {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;
using namespace ::ucp::train_test;  // NOLINT: the shared helpers

json Llama(int layers, int max_positions, bool tied) {
  return {{"model_type", "llama"},
          {"vocab_size", 53},
          {"hidden_size", 32},
          {"intermediate_size", 40},
          {"num_hidden_layers", layers},
          {"num_attention_heads", 8},
          {"num_key_value_heads", 2},
          {"head_dim", 4},
          {"max_position_embeddings", max_positions},
          {"tie_word_embeddings", tied}};
}

json Adam(json cfg) {
  cfg["gradient_clipping"] = 1.0;
  cfg["optimizer"] = {{"type", "AdamW"}, {"params", {{"lr", 0.01}, {"weight_decay", 0.1}}}};
  return cfg;
}

struct Case {
  std::string name;
  int ranks;
  json ds, model;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::string FileBytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class ActCkptSameTraining : public ::testing::TestWithParam<Case> {};

TEST_P(ActCkptSameTraining, BitwiseWithCheckpointingOffAndOn) {
  const Case& c = GetParam();
  testing::ScratchDir scratch("train_act_ckpt");
  const std::string dir = scratch.path();
  WriteJson(dir + "/ds.json", c.ds);
  WriteJson(dir + "/model.json", c.model);
  std::vector<json> runs;
  for (bool on : {false, true}) {
    std::vector<std::string> args = BaseArgs(c.ranks, dir);
    const std::string save = absl::StrCat(dir, "/save_", on);
    for (const std::string& a : {std::string("--seq-len"), std::string("8"), std::string("--data"),
                                 std::string("recipe:3"), std::string("--train-steps"),
                                 std::string("2"), std::string("--save"), save})
      args.push_back(a);
    if (on) args.push_back("--activation-checkpointing");
    TrainRun r = Train(args, dir);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.metrics["activation_checkpointing"].get<bool>(), on);
    runs.push_back(r.metrics);
  }
  for (const char* step : {"1", "2"}) {
    EXPECT_EQ(runs[0]["losses"][step].get<double>(), runs[1]["losses"][step].get<double>())
        << "step " << step;
    EXPECT_EQ(runs[0]["grad_norm"][step].get<double>(), runs[1]["grad_norm"][step].get<double>())
        << "step " << step;
  }
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir + "/save_0/global_step2")) {
    const fs::path on = fs::path(dir) / "save_1/global_step2" / e.path().filename();
    EXPECT_TRUE(FileBytes(e.path()) == FileBytes(on)) << e.path().filename();
    ++files;
  }
  EXPECT_GT(files, 0u);
}

json AutoEpCase(const std::string& fixture, int stage) {
  json cfg = ReadJson(Fixture(fixture) + "/run_log.json")["ds_config"];
  cfg["train_micro_batch_size_per_gpu"] = 4;
  cfg["expert_parallel"]["autoep_size"] = 2;
  cfg["zero_optimization"]["stage"] = stage;
  cfg.erase("checkpoint");
  return cfg;
}

json AutoEpModel(const std::string& fixture) {
  return ReadJson(Fixture(fixture) + "/run_log.json")["hf_config"];
}

std::vector<Case> Cases() {
  return {
      // A tied weight's two gradients and two micro-batches: autograd still sums them.
      {"llama_tied_s0_dp2_gas2", 2,
       Adam({{"train_batch_size", 8},
             {"train_micro_batch_size_per_gpu", 2},
             {"zero_optimization", {{"stage", 0}}}}),
       Llama(2, 8, true)},
      {"llama_s2_bf16_sp2", 2,
       Adam({{"train_batch_size", 4},
             {"sequence_parallel_size", 2},
             {"bf16", {{"enabled", true}}},
             {"zero_optimization", {{"stage", 2}}}}),
       Llama(2, 8, false)},
      {"llama_s3_sp2", 2,
       Adam({{"train_batch_size", 4},
             {"sequence_parallel_size", 2},
             {"zero_optimization", {{"stage", 3}}}}),
       Llama(2, 8, false)},
      {"llama_s1_tp2", 2,
       Adam({{"train_batch_size", 4},
             {"tensor_parallel", {{"autotp_size", 2}}},
             {"zero_optimization", {{"stage", 1}}}}),
       Llama(2, 8, false)},
      {"mixtral_s2_ep2", 2, AutoEpCase("autoep_mixtral_s2_fp32_dp4_ep2", 2),
       AutoEpModel("autoep_mixtral_s2_fp32_dp4_ep2")},
      {"deepseek_v3_s1_ep2", 2, AutoEpCase("autoep_deepseek_v3_s1_fp32_dp4_ep4", 1),
       AutoEpModel("autoep_deepseek_v3_s1_fp32_dp4_ep4")},
      {"tinylm_s1_dp2", 2, Adam({{"train_batch_size", 8}, {"zero_optimization", {{"stage", 1}}}}),
       kTinyLm},
  };
}

INSTANTIATE_TEST_SUITE_P(Cases, ActCkptSameTraining, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

TEST(ActCkpt, NoAttentionActivationLivesFromForwardToBackward) {
  testing::ScratchDir scratch("train_act_ckpt_mem");
  const std::string dir = scratch.path();
  WriteJson(dir + "/ds.json",
            Adam({{"train_batch_size", 1}, {"zero_optimization", {{"stage", 2}}}}));
  WriteJson(dir + "/model.json", Llama(4, 1024, false));
  std::vector<json> runs;
  for (bool on : {false, true}) {
    std::vector<std::string> args = BaseArgs(1, dir);
    for (const char* a : {"--seq-len", "1024", "--data", "recipe:3", "--train-steps", "1"})
      args.push_back(a);
    if (on) args.push_back("--activation-checkpointing");
    TrainRun r = Train(args, dir);
    ASSERT_EQ(r.code, 0) << r.err;
    runs.push_back(r.metrics);
  }
  EXPECT_EQ(runs[0]["losses"]["1"].get<double>(), runs[1]["losses"]["1"].get<double>());
  // Off: each of the 4 layers keeps its softmax [8, 1024, 1024] fp32 (32 MiB) for backward; on:
  // at most two such buffers live, inside one layer.
  const double off = runs[0]["peak_rss_bytes_per_rank_max"].get<double>(),
               on = runs[1]["peak_rss_bytes_per_rank_max"].get<double>();
  EXPECT_GT(off - on, 2 * 32.0 * (1 << 20)) << "off " << off << " on " << on;
}

TEST(ActCkpt, DeepSpeedsBlockTurnsItOnAndRefusesWhatItDoesNotImplement) {
  testing::ScratchDir scratch("train_act_ckpt_cfg");
  const std::string dir = scratch.path();
  WriteJson(dir + "/model.json", kTinyLm);
  const json base = Adam({{"train_batch_size", 2}});
  std::vector<std::string> args = BaseArgs(1, dir);
  for (const char* a : {"--data", "recipe:3", "--train-steps", "1"}) args.push_back(a);

  json cfg = base;
  cfg["activation_checkpointing"] = {{"partition_activations", false},
                                     {"synchronize_checkpoint_boundary", true}};
  WriteJson(dir + "/ds.json", cfg);
  TrainRun r = Train(args, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.metrics["activation_checkpointing"].get<bool>());

  cfg["activation_checkpointing"] = {{"cpu_checkpointing", true}};
  WriteJson(dir + "/ds.json", cfg);
  r = Train(args, dir);
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("`activation_checkpointing.cpu_checkpointing`"));
  EXPECT_THAT(r.err, HasSubstr("not implemented"));
}

}  // namespace
}  // namespace ucp
