// ResolveAutoEpLayers against the settings DeepSpeed resolved in the six AutoEP fixtures
// (fixtures/deepspeed/autoep_*/run_log.json: hf_config, ds_config.expert_parallel and
// autoep_layers, embedded below with the config.json keys AutoEP reads), then the preset rules
// of specs/deepspeed-runtime.md §1.2 and the post-detection errors.
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/config/autoep_config.h"

namespace ucp::runtime {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr char kMixtralHf[] =
    R"({"hidden_size":16,"intermediate_size":6,"model_type":"mixtral","num_experts_per_tok":2,
        "num_hidden_layers":2,"num_local_experts":4})";
constexpr char kQwen3Hf[] =
    R"({"decoder_sparse_step":1,"hidden_size":16,"intermediate_size":20,"mlp_only_layers":[],
        "model_type":"qwen3_moe","moe_intermediate_size":6,"norm_topk_prob":true,"num_experts":4,
        "num_experts_per_tok":2,"num_hidden_layers":2})";
constexpr char kDeepseekV3Hf[] =
    R"({"first_k_dense_replace":1,"hidden_size":16,"intermediate_size":20,
        "model_type":"deepseek_v3","moe_intermediate_size":6,"n_group":2,"n_routed_experts":4,
        "n_shared_experts":1,"norm_topk_prob":true,"num_experts_per_tok":2,"num_hidden_layers":2,
        "routed_scaling_factor":2.5,"topk_group":1})";

// One layer as DeepSpeed recorded it; groups 0 = null.
json Recorded(int layer, int ep, const char* score, double scale, int groups, int limited,
              bool shared) {
  return json{{"module", absl::StrCat("model.layers.", layer, ".mlp")},
              {"num_experts", 4},
              {"top_k", 2},
              {"num_local_experts", 4 / ep},
              {"score_func", score},
              {"route_norm", true},
              {"route_scale", scale},
              {"num_expert_groups", groups ? json(groups) : json(nullptr)},
              {"num_limited_groups", limited ? json(limited) : json(nullptr)},
              {"shared_experts", shared},
              {"shared_experts_gate", false},
              {"gate_bias", false},
              {"score_apply", "post"}};
}

struct FixtureCase {
  const char* name;
  int world;
  const char* hf;
  json expert_parallel;
  json layers;
};

std::vector<FixtureCase> Fixtures() {
  auto ep = [](int size, const char* preset) {
    return json{{"autoep_size", size},
                {"enabled", true},
                {"preset_model", preset},
                {"use_grouped_mm", false}};
  };
  auto two = [](int size) {
    return json::array({Recorded(0, size, "softmax", 1.0, 0, 0, false),
                        Recorded(1, size, "softmax", 1.0, 0, 0, false)});
  };
  return {
      {"autoep_deepseek_v3_s1_fp32_dp4_ep4", 4, kDeepseekV3Hf, ep(4, "deepseek_v3"),
       json::array({Recorded(1, 4, "sigmoid", 2.5, 2, 1, true)})},
      {"autoep_mixtral_s2_bf16_dp4_ep2", 4, kMixtralHf, ep(2, "mixtral"), two(2)},
      {"autoep_mixtral_s2_fp32_dp4_ep2", 4, kMixtralHf, ep(2, "mixtral"), two(2)},
      {"autoep_mixtral_s3_fp32_dp4_ep2", 4, kMixtralHf, ep(2, "mixtral"), two(2)},
      {"autoep_qwen3_s2_fp32_dp2_ep1", 2, kQwen3Hf, ep(1, "qwen3_moe"), two(1)},
      {"autoep_qwen3_s3_fp32_dp4_ep2", 4, kQwen3Hf, ep(2, "qwen3_moe"), two(2)},
  };
}

AutoEpPlan Resolve(const json& expert_parallel, const json& hf, int world) {
  absl::StatusOr<AutoEpConfig> c = ParseAutoEpConfig(expert_parallel, "expert_parallel");
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return {};
  absl::StatusOr<AutoEpPlan> plan = ResolveAutoEpLayers(*c, hf, world);
  EXPECT_TRUE(plan.ok()) << plan.status() << " for " << hf.dump();
  return plan.ok() ? *plan : AutoEpPlan{};
}

std::string ErrorOf(const json& expert_parallel, const json& hf, int world = 4) {
  absl::StatusOr<AutoEpConfig> c = ParseAutoEpConfig(expert_parallel, "expert_parallel");
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return "";
  absl::StatusOr<AutoEpPlan> plan = ResolveAutoEpLayers(*c, hf, world);
  EXPECT_FALSE(plan.ok()) << hf.dump();
  return plan.ok() ? "" : std::string(plan.status().message());
}

// What DeepSpeed records per layer, from our settings.
json AsRecorded(const MoeLayerSettings& s) {
  return json{{"module", s.module_path},
              {"num_experts", s.num_experts},
              {"top_k", s.top_k},
              {"num_local_experts", s.num_local_experts},
              {"score_func", s.score_func},
              {"route_norm", s.route_norm},
              {"route_scale", s.route_scale},
              {"num_expert_groups", s.num_expert_groups ? json(s.num_expert_groups) : json()},
              {"num_limited_groups", s.num_limited_groups ? json(s.num_limited_groups) : json()},
              {"shared_experts", s.shared_experts},
              {"shared_experts_gate", s.shared_experts_gate},
              {"gate_bias", s.gate_bias},
              {"score_apply", s.score_apply}};
}

TEST(AutoEpLayersTest, MatchesDeepSpeedRecords) {
  for (const FixtureCase& f : Fixtures()) {
    const AutoEpPlan plan = Resolve(f.expert_parallel, json::parse(f.hf), f.world);
    json ours = json::array();
    for (const MoeLayerSettings& s : plan.layers) ours.push_back(AsRecorded(s));
    EXPECT_EQ(ours, f.layers) << f.name << "\nours: " << ours.dump(1);
  }
}

// The embedded records are the fixtures' (skipped when the fixtures are not there).
TEST(AutoEpLayersTest, EmbeddedRecordsAreTheFixtures) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  const std::string source = root != nullptr ? root : ".";
  for (const FixtureCase& f : Fixtures()) {
    std::ifstream in(absl::StrCat(source, "/fixtures/deepspeed/", f.name, "/run_log.json"));
    if (!in.good()) GTEST_SKIP() << "fixtures not found under " << source;
    const json log = json::parse(in);
    EXPECT_EQ(log["world_size"], f.world) << f.name;
    EXPECT_EQ(log["ds_config"]["expert_parallel"], f.expert_parallel) << f.name;
    const json hf = json::parse(f.hf);
    for (const auto& [key, value] : hf.items()) {
      EXPECT_EQ(log["hf_config"][key], value) << f.name << " " << key;
    }
    ASSERT_EQ(log["autoep_layers"].size(), f.layers.size()) << f.name;
    for (size_t i = 0; i < f.layers.size(); ++i) {
      for (const auto& [key, value] : f.layers[i].items()) {
        EXPECT_EQ(log["autoep_layers"][i][key], value) << f.name << " " << key;
      }
    }
  }
}

TEST(AutoEpLayersTest, FixtureWidthsAndDenseLayers) {
  const json ep = {{"enabled", true}, {"autoep_size", 2}};
  AutoEpPlan plan = Resolve(ep, json::parse(kDeepseekV3Hf), 4);
  EXPECT_EQ(plan.preset, "deepseek_v3");  // from model_type
  EXPECT_THAT(plan.dense_layers, ElementsAre(0));
  ASSERT_EQ(plan.layers.size(), 1u);
  const MoeLayerSettings& v3 = plan.layers[0];
  EXPECT_EQ(v3.hidden, 16);
  EXPECT_EQ(v3.intermediate, 6);
  EXPECT_EQ(v3.group_score, "top2_sum");
  EXPECT_EQ(v3.shared_prefix, "shared_experts");
  EXPECT_EQ(v3.shared_intermediate, 6);
  EXPECT_EQ(v3.combine_impl, "weighted_sum");

  plan = Resolve(ep, json::parse(kMixtralHf), 4);
  EXPECT_EQ(plan.preset, "mixtral");
  EXPECT_TRUE(plan.dense_layers.empty());
  EXPECT_EQ(plan.layers.at(1).intermediate, 6);  // intermediate_size
  plan = Resolve(ep, json::parse(kQwen3Hf), 4);
  EXPECT_EQ(plan.layers.at(0).intermediate, 6);  // moe_intermediate_size
  EXPECT_FALSE(plan.layers.at(0).shared_experts);
}

TEST(AutoEpLayersTest, QwenSparseStepAndSharedExperts) {
  json hf = json::parse(kQwen3Hf);
  hf["num_hidden_layers"] = 6;
  hf["decoder_sparse_step"] = 2;
  hf["mlp_only_layers"] = {3};
  const json ep = {{"enabled", true}};
  AutoEpPlan plan = Resolve(ep, hf, 1);
  ASSERT_EQ(plan.layers.size(), 2u);
  EXPECT_EQ(plan.layers[0].module_path, "model.layers.1.mlp");
  EXPECT_EQ(plan.layers[1].layer_index, 5);
  EXPECT_THAT(plan.dense_layers, ElementsAre(0, 2, 3, 4));

  hf = json::parse(kQwen3Hf);
  hf["model_type"] = "qwen2_moe";
  hf["shared_expert_intermediate_size"] = 12;
  hf["norm_topk_prob"] = false;
  plan = Resolve(ep, hf, 1);
  EXPECT_EQ(plan.preset, "qwen3_moe");
  const MoeLayerSettings& q2 = plan.layers.at(0);
  EXPECT_TRUE(q2.shared_experts);
  EXPECT_TRUE(q2.shared_experts_gate);
  EXPECT_EQ(q2.shared_prefix, "shared_expert");
  EXPECT_EQ(q2.shared_intermediate, 12);
  EXPECT_FALSE(q2.route_norm);  // norm_topk_prob wins over the preset's true
  EXPECT_FALSE(Resolve({{"enabled", true}, {"has_shared_experts", false}}, hf, 1)
                   .layers.at(0)
                   .shared_experts);

  hf["model_type"] = "qwen3_5_moe_text";
  EXPECT_EQ(Resolve(ep, hf, 1).preset, "qwen3_5_moe");
  EXPECT_TRUE(Resolve(ep, hf, 1).layers.at(0).shared_experts_gate);
  hf["model_type"] = "qwen3_5_moe";
  EXPECT_THAT(ErrorOf(ep, hf, 1), AllOf(HasSubstr("does not support model_type='qwen3_5_moe'"),
                                        HasSubstr("qwen3_5_moe_text")));
  EXPECT_THAT(ErrorOf({{"enabled", true}, {"preset_model", "qwen3_5_moe"}}, hf, 1),
              HasSubstr("text backbone"));
}

TEST(AutoEpLayersTest, DeepseekV2RoutingRules) {
  json hf = json::parse(kDeepseekV3Hf);
  hf["model_type"] = "deepseek_v2";
  hf["routed_scaling_factor"] = 16.0;
  hf["n_group"] = 1;
  hf["topk_group"] = 1;
  const json ep = {{"enabled", true}, {"autoep_size", 2}};
  MoeLayerSettings s = Resolve(ep, hf, 2).layers.at(0);
  EXPECT_FALSE(s.route_norm);  // norm_topk_prob ignored
  EXPECT_EQ(s.score_func, "softmax");
  EXPECT_DOUBLE_EQ(s.route_scale, 16.0);
  EXPECT_EQ(s.num_expert_groups, 1);  // copied for any model [quirk], scored top2_sum
  EXPECT_EQ(s.group_score, "top2_sum");
  hf["topk_method"] = "group_limited_greedy";
  hf["n_group"] = 4;
  hf["topk_group"] = 2;
  s = Resolve(ep, hf, 2).layers.at(0);
  EXPECT_EQ(s.group_score, "max");
  EXPECT_EQ(s.num_expert_groups, 4);
  EXPECT_EQ(s.num_limited_groups, 2);
  EXPECT_TRUE(Resolve({{"enabled", true}, {"route_norm", true}}, hf, 1).layers.at(0).route_norm);
}

TEST(AutoEpLayersTest, OverridesWin) {
  json hf = json::parse(kDeepseekV3Hf);
  hf.erase("norm_topk_prob");
  hf["scoring_func"] = "softmax";
  MoeLayerSettings s = Resolve({{"enabled", true}}, hf, 1).layers.at(0);
  EXPECT_FALSE(s.route_norm);          // V3 preset default without norm_topk_prob
  EXPECT_EQ(s.score_func, "softmax");  // config.scoring_func over the preset
  s = Resolve({{"enabled", true},
               {"route_norm", true},
               {"score_func", "sigmoid"},
               {"routed_scaling_factor", 3.0},
               {"route_scale", 5.0},
               {"num_expert_groups", 1},
               {"num_limited_groups", 1},
               {"top_k", 1},
               {"score_apply", "pre"}},
              hf, 1)
          .layers.at(0);
  EXPECT_TRUE(s.route_norm);
  EXPECT_EQ(s.score_func, "sigmoid");
  EXPECT_DOUBLE_EQ(s.route_scale, 3.0);
  EXPECT_EQ(s.num_expert_groups, 1);
  EXPECT_EQ(s.top_k, 1);
  EXPECT_EQ(s.score_apply, "pre");
  hf.erase("routed_scaling_factor");
  EXPECT_DOUBLE_EQ(
      Resolve({{"enabled", true}, {"route_scale", 5.0}}, hf, 1).layers.at(0).route_scale, 5.0);
  json mixtral = json::parse(kMixtralHf);
  mixtral["norm_topk_prob"] = false;
  EXPECT_FALSE(Resolve({{"enabled", true}}, mixtral, 1).layers.at(0).route_norm);
}

TEST(AutoEpLayersTest, CustomPresetAndSelectionErrors) {
  json hf = json::parse(kMixtralHf);
  hf["model_type"] = "my_moe";
  const AutoEpPlan plan =
      Resolve({{"enabled", true}, {"moe_layer_pattern", R"(model\.layers\.[1]\.mlp)"}}, hf, 1);
  EXPECT_EQ(plan.preset, "custom");
  ASSERT_EQ(plan.layers.size(), 1u);
  EXPECT_EQ(plan.layers[0].layer_index, 1);
  EXPECT_TRUE(plan.layers[0].route_norm);
  EXPECT_THAT(ErrorOf({{"enabled", true}}, hf),
              AllOf(HasSubstr("model_type='my_moe'"), HasSubstr("expert_parallel.preset_model")));
  EXPECT_THAT(ErrorOf({{"enabled", true}, {"moe_layer_pattern", "nothing"}}, hf),
              HasSubstr("AutoEP: no MoE layers detected for moe_layer_pattern='nothing'"));
  EXPECT_THAT(
      ErrorOf({{"enabled", true}, {"preset_model", "deepseek_v3"}}, json::parse(kMixtralHf)),
      HasSubstr("Could not determine num_experts for layer 'model.layers.0.mlp'. Set "
                "model.config.n_routed_experts"));
  EXPECT_THAT(ErrorOf({{"enabled", true}, {"expert_w1", "w1"}}, json::parse(kMixtralHf)),
              HasSubstr("`expert_parallel.expert_w1` 'w1'"));
}

TEST(AutoEpLayersTest, PostDetectionErrors) {
  const json mixtral = json::parse(kMixtralHf);
  EXPECT_THAT(ErrorOf({{"enabled", true}, {"autoep_size", 8}}, mixtral, 8),
              AllOf(HasSubstr("autoep_size=8 exceeds num_experts=4 in layer 'model.layers.0.mlp'"),
                    HasSubstr("Valid autoep_size values (divisors of 4): [1, 2, 4]")));
  json six = mixtral;
  six["num_local_experts"] = 6;
  EXPECT_THAT(ErrorOf({{"enabled", true}, {"autoep_size", 4}}, six, 4),
              AllOf(HasSubstr("num_experts=6 in layer 'model.layers.0.mlp' is not divisible by "
                              "autoep_size=4"),
                    HasSubstr("Suggested autoep_size values: [1, 2, 3, 6]")));
  EXPECT_THAT(ErrorOf({{"enabled", true}, {"top_k", 5}}, mixtral),
              HasSubstr("top_k=5 exceeds num_experts=4"));
  EXPECT_THAT(ErrorOf({{"enabled", true}, {"autoep_size", 3}}, mixtral, 4),
              HasSubstr("Computed edp would be non-integral"));
  EXPECT_THAT(
      ErrorOf({{"enabled", true}, {"num_expert_groups", 3}, {"num_limited_groups", 1}}, mixtral),
      HasSubstr("num_expert_groups (3) must divide num_experts (4)"));
  EXPECT_THAT(ErrorOf({{"enabled", true}, {"num_limited_groups", 1}}, mixtral),
              HasSubstr("num_limited_groups requires num_expert_groups"));
  EXPECT_THAT(ErrorOf({{"enabled", true}, {"num_expert_groups", 2}}, mixtral),
              HasSubstr("num_limited_groups must be set when num_expert_groups is set"));
  EXPECT_THAT(
      ErrorOf({{"enabled", true}, {"num_expert_groups", 4}, {"num_limited_groups", 2}}, mixtral),
      HasSubstr("experts_per_group (1) must be >= 2"));
  json v3 = json::parse(kDeepseekV3Hf);
  v3["topk_group"] = 3;  // from config.json: > n_group
  EXPECT_THAT(ErrorOf({{"enabled", true}}, v3),
              HasSubstr("num_limited_groups (3) must be >= 1 and <= num_expert_groups (2)"));
  json huge = mixtral;
  huge["num_hidden_layers"] = 1 << 20;
  EXPECT_THAT(ErrorOf({{"enabled", true}}, huge),
              HasSubstr("config.json: `num_hidden_layers` 1048576 exceeds the limit"));
  v3["routed_scaling_factor"] = "big";
  EXPECT_THAT(ErrorOf({{"enabled", true}}, v3),
              HasSubstr("config.json: `routed_scaling_factor` must be a finite number"));
}

}  // namespace
}  // namespace ucp::runtime
