// The `expert_parallel` block, mirroring DeepSpeed's test_autoep_unit.py::TestAutoEPConfig
// (specs/deepspeed-runtime.md §7), and its hook into ParseTrainConfig.
#include "runtime/config/autoep_config.h"

#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/config/ds_config.h"

namespace ucp::runtime {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using json = nlohmann::json;

AutoEpConfig Parse(const json& block) {
  absl::StatusOr<AutoEpConfig> c = ParseAutoEpConfig(block, "expert_parallel");
  EXPECT_TRUE(c.ok()) << c.status() << " for " << block.dump();
  return c.ok() ? *c : AutoEpConfig{};
}

std::string ErrorOf(const json& block) {
  absl::StatusOr<AutoEpConfig> c = ParseAutoEpConfig(block, "expert_parallel");
  EXPECT_FALSE(c.ok()) << block.dump();
  if (c.ok()) return "";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  return std::string(c.status().message());
}

TEST(AutoEpConfigTest, Defaults) {
  const AutoEpConfig c = Parse(json::object());
  EXPECT_FALSE(c.enabled);
  EXPECT_EQ(c.autoep_size, 1);
  EXPECT_EQ(c.expert_tensor_parallel_size, 1);
  EXPECT_FALSE(c.validate_folding_routing);
  EXPECT_FALSE(c.preset_model.has_value());
  EXPECT_FALSE(c.moe_layer_pattern.has_value());
  EXPECT_TRUE(c.use_grouped_mm);
  EXPECT_FALSE(c.disable_triton_grouped_mm);
  EXPECT_FALSE(c.route_norm.has_value());
  EXPECT_DOUBLE_EQ(c.route_scale, 1.0);
  EXPECT_EQ(c.score_apply, "auto");
  EXPECT_EQ(c.combine_impl, "auto");
  EXPECT_EQ(c.score_func, "auto");
  EXPECT_FALSE(c.num_expert_groups.has_value());
  EXPECT_FALSE(c.num_limited_groups.has_value());
  EXPECT_FALSE(c.top_k.has_value());
  EXPECT_FALSE(c.routed_scaling_factor.has_value());
  EXPECT_FALSE(c.expert_w3_set);
  EXPECT_FALSE(c.has_shared_experts.has_value());
}

TEST(AutoEpConfigTest, EnabledAndEveryKey) {
  const AutoEpConfig c = Parse(json::parse(R"({
    "enabled": true, "autoep_size": 4, "expert_tensor_parallel_size": 1,
    "validate_folding_routing": true, "preset_model": "deepseek_v3",
    "moe_layer_pattern": "model\\.layers\\.\\d+\\.mlp", "router_pattern": "gate",
    "expert_pattern": "experts", "use_grouped_mm": false, "disable_triton_grouped_mm": true,
    "route_norm": false, "route_scale": 2.0, "score_apply": "pre", "combine_impl": "legacy_bmm",
    "num_expert_groups": 4, "num_limited_groups": 2, "score_func": "sigmoid", "top_k": 3,
    "load_balance_coeff": null, "routed_scaling_factor": 2.5, "expert_w1": "gate_up_proj",
    "expert_w2": "down_proj", "expert_w3": null, "num_experts_attr": "n_routed_experts",
    "top_k_attr": "num_experts_per_tok", "has_shared_experts": true,
    "shared_experts_pattern": "shared_experts", "shared_experts_gate_pattern": "gate2"})"));
  EXPECT_TRUE(c.enabled);
  EXPECT_EQ(c.autoep_size, 4);
  EXPECT_TRUE(c.validate_folding_routing);
  EXPECT_EQ(c.preset_model, "deepseek_v3");
  EXPECT_FALSE(c.use_grouped_mm);
  EXPECT_TRUE(c.disable_triton_grouped_mm);
  EXPECT_EQ(c.route_norm, false);
  EXPECT_DOUBLE_EQ(c.route_scale, 2.0);
  EXPECT_EQ(c.score_apply, "pre");
  EXPECT_EQ(c.combine_impl, "legacy_bmm");
  EXPECT_EQ(c.num_expert_groups, 4);
  EXPECT_EQ(c.num_limited_groups, 2);
  EXPECT_EQ(c.score_func, "sigmoid");
  EXPECT_EQ(c.top_k, 3);
  EXPECT_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_TRUE(c.expert_w3_set);
  EXPECT_FALSE(c.expert_w3.has_value());  // explicit null: fused gate+up
  EXPECT_EQ(c.has_shared_experts, true);
  EXPECT_EQ(c.shared_experts_gate_pattern, "gate2");
}

TEST(AutoEpConfigTest, ExpertW3TriState) {
  EXPECT_FALSE(Parse(json::object()).expert_w3_set);
  const AutoEpConfig null_w3 = Parse({{"expert_w3", nullptr}});
  EXPECT_TRUE(null_w3.expert_w3_set);
  EXPECT_FALSE(null_w3.expert_w3.has_value());
  const AutoEpConfig named = Parse({{"expert_w3", "up_proj"}});
  EXPECT_TRUE(named.expert_w3_set);
  EXPECT_EQ(named.expert_w3, "up_proj");
}

TEST(AutoEpConfigTest, EveryNonNullLoadBalanceCoeffIsRejectedEvenWhenDisabled) {
  const std::vector<std::pair<json, std::string>> cases = {
      {json(0), "0"},
      {json(0.0), "0.0"},
      {json(1e-3), "0.001"},
      {json(0.02), "0.02"},
      {json(false), "False"},
      {json(true), "True"},
      {json("1e-3"), "'1e-3'"},
      {json::array({1e-3}), "[0.001]"},
      {json{{"coeff", 1e-3}}, "{'coeff': 0.001}"},
  };
  for (bool enabled : {false, true}) {
    for (const auto& [value, repr] : cases) {
      const std::string m = ErrorOf({{"enabled", enabled}, {"load_balance_coeff", value}});
      EXPECT_THAT(m, AllOf(HasSubstr("`expert_parallel.load_balance_coeff`"),
                           HasSubstr(absl::StrCat("load_balance_coeff=", repr, " is")),
                           HasSubstr("expert_bias"), HasSubstr("not supported"), HasSubstr("null"),
                           HasSubstr("omit")))
          << value.dump();
    }
  }
  Parse({{"load_balance_coeff", nullptr}, {"enabled", true}});
}

TEST(AutoEpConfigTest, ValidateFoldingRoutingMustBeABool) {
  for (const json& value : {json(1), json("true"), json(0)}) {
    EXPECT_THAT(ErrorOf({{"validate_folding_routing", value}}),
                AllOf(HasSubstr("`expert_parallel.validate_folding_routing`"),
                      HasSubstr("must be a boolean")));
  }
  EXPECT_TRUE(Parse({{"validate_folding_routing", true}}).validate_folding_routing);
}

TEST(AutoEpConfigTest, ExpertTensorParallelSizeIsReserved) {
  EXPECT_THAT(ErrorOf({{"enabled", true}, {"expert_tensor_parallel_size", 2}}),
              AllOf(HasSubstr("`expert_parallel.expert_tensor_parallel_size`"),
                    HasSubstr("reserved for expert-internal tensor parallelism")));
  EXPECT_EQ(Parse({{"expert_tensor_parallel_size", 1}}).expert_tensor_parallel_size, 1);
  AutoEpConfig c;
  c.enabled = true;
  c.expert_tensor_parallel_size = 2;
  EXPECT_THAT(ValidateAutoEpTopology(c, 4, 2, false).message(),
              HasSubstr("reserved for expert-internal tensor parallelism"));
}

TEST(AutoEpConfigTest, SizesMustBePositiveIntegers) {
  for (const json& value : {json(0), json(-2)}) {
    EXPECT_THAT(ErrorOf({{"autoep_size", value}}),
                HasSubstr("`expert_parallel.autoep_size` must be a positive integer"));
  }
  for (const json& value : {json(1.5), json("2"), json(true)}) {
    EXPECT_THAT(ErrorOf({{"autoep_size", value}}),
                AllOf(HasSubstr("`expert_parallel.autoep_size`"), HasSubstr("integer")));
  }
}

TEST(AutoEpConfigTest, Topology) {
  AutoEpConfig c;
  c.enabled = true;
  c.autoep_size = 3;
  EXPECT_THAT(ValidateAutoEpTopology(c, 4, 2, false).message(),
              AllOf(HasSubstr("(3 * 1 = 3) must divide the stage size (world_size=4"),
                    HasSubstr("Computed edp would be non-integral"),
                    HasSubstr("Valid expert-width values: [1, 2, 4]")));
  c.autoep_size = 2;
  for (int stage : {0, 1, 2, 3}) {  // ZeRO-3 + AutoEP is allowed
    EXPECT_TRUE(ValidateAutoEpTopology(c, 4, stage, false).ok()) << stage;
  }
  EXPECT_TRUE(ValidateAutoEpTopology(c, 4, 2, /*use_data_before=*/true).ok());
  EXPECT_THAT(ValidateAutoEpTopology(c, 0, 2, false).message(),
              HasSubstr("world_size must be a positive integer, got 0"));
  c.autoep_size = 8;
  EXPECT_FALSE(ValidateAutoEpTopology(c, 4, 2, false).ok());
  c.enabled = false;  // disabled: nothing to check
  EXPECT_TRUE(ValidateAutoEpTopology(c, 4, 2, false).ok());
}

TEST(AutoEpConfigTest, UnknownPreset) {
  EXPECT_THAT(ErrorOf({{"preset_model", "llama4"}}),
              AllOf(HasSubstr("`expert_parallel.preset_model`"),
                    HasSubstr("Unknown preset_model 'llama4'. Available presets: ['mixtral', "
                              "'qwen3_moe', 'qwen3_5_moe', 'deepseek_v2', 'deepseek_v3']")));
  for (const std::string& name : AutoEpPresetNames()) {
    EXPECT_EQ(Parse({{"preset_model", name}}).preset_model, name);
  }
}

TEST(AutoEpConfigTest, RoutedScalingFactorIsANumberOrAuto) {
  for (const json& value : {json("fast"), json(true), json::array({2.5}), json("2.5")}) {
    EXPECT_THAT(ErrorOf({{"routed_scaling_factor", value}}),
                AllOf(HasSubstr("`expert_parallel.routed_scaling_factor`"),
                      HasSubstr("must be a finite number or 'auto'")))
        << value.dump();
  }
  EXPECT_FALSE(Parse({{"routed_scaling_factor", "auto"}}).routed_scaling_factor.has_value());
  EXPECT_EQ(Parse({{"routed_scaling_factor", 2}}).routed_scaling_factor, 2.0);
  EXPECT_THAT(ErrorOf({{"route_scale", "big"}}),
              HasSubstr("`expert_parallel.route_scale` must be a finite number"));
}

TEST(AutoEpConfigTest, TopKIsAnIntegerOrAuto) {
  EXPECT_FALSE(Parse({{"top_k", "auto"}}).top_k.has_value());
  EXPECT_EQ(Parse({{"top_k", 2}}).top_k, 2);
  EXPECT_THAT(ErrorOf({{"top_k", "two"}}),
              HasSubstr("`expert_parallel.top_k` must be an integer or \"auto\""));
  EXPECT_THAT(ErrorOf({{"top_k", 0}}), HasSubstr("`expert_parallel.top_k` must be >= 1"));
}

TEST(AutoEpConfigTest, GroupBounds) {
  EXPECT_THAT(ErrorOf({{"num_expert_groups", 0}}),
              HasSubstr("`expert_parallel.num_expert_groups` must be >= 1, got 0"));
  EXPECT_THAT(ErrorOf({{"num_limited_groups", 0}}),
              HasSubstr("`expert_parallel.num_limited_groups` must be >= 1, got 0"));
  EXPECT_THAT(ErrorOf({{"num_expert_groups", 2}, {"num_limited_groups", 3}}),
              HasSubstr("num_limited_groups (3) must be <= num_expert_groups (2)"));
  const AutoEpConfig c = Parse({{"num_expert_groups", 4}, {"num_limited_groups", 4}});
  EXPECT_EQ(c.num_limited_groups, 4);
}

TEST(AutoEpConfigTest, EnumsAndNames) {
  EXPECT_THAT(ErrorOf({{"score_apply", "mid"}}),
              HasSubstr("`expert_parallel.score_apply` must be one of ('auto', 'pre', 'post'), "
                        "got 'mid'"));
  EXPECT_THAT(ErrorOf({{"combine_impl", "bmm"}}),
              HasSubstr("must be one of ('auto', 'weighted_sum', 'legacy_bmm')"));
  EXPECT_THAT(ErrorOf({{"score_func", "relu"}}),
              HasSubstr("must be one of ('auto', 'softmax', 'sigmoid')"));
  EXPECT_THAT(ErrorOf({{"expert_pattern", "mlp.experts"}}),
              HasSubstr("`expert_parallel.expert_pattern` must be a direct attribute name (no "
                        "dots)"));
  EXPECT_THAT(ErrorOf({{"num_experts_attr", ""}}),
              HasSubstr("`expert_parallel.num_experts_attr` must be a non-empty string"));
  EXPECT_THAT(ErrorOf({{"has_shared_experts", "yes"}}),
              HasSubstr("`expert_parallel.has_shared_experts`"));
  EXPECT_THAT(ErrorOf({{"moe_layer_pattern", "model.layers.(\\d+"}}),
              HasSubstr("`expert_parallel.moe_layer_pattern` is not a valid regex"));
  EXPECT_THAT(ErrorOf({{"route_norm", "auto"}}),
              HasSubstr("`expert_parallel.route_norm` must be a boolean"));
}

TEST(AutoEpConfigTest, UnknownKeySuggestsTheNearest) {
  EXPECT_THAT(ErrorOf({{"autoep_sizes", 2}}),
              HasSubstr("unknown key `expert_parallel.autoep_sizes`; did you mean "
                        "`expert_parallel.autoep_size`?"));
  EXPECT_THAT(ErrorOf({{"enabled", false}, {"preset_modle", "mixtral"}}),
              HasSubstr("did you mean `expert_parallel.preset_model`?"));
}

// ParseTrainConfig reads the block and runs the topology check with its world size.
TEST(AutoEpConfigTest, TrainConfigHook) {
  const json base = {{"train_batch_size", 8}};
  json config = base;
  config["expert_parallel"] = {{"enabled", true}, {"autoep_size", 2}, {"preset_model", "mixtral"}};
  config["use_data_before_expert_parallelism"] = true;
  absl::StatusOr<TrainConfig> c = ParseTrainConfig(config, 4);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->expert_parallel.enabled);
  EXPECT_EQ(c->expert_parallel.autoep_size, 2);
  EXPECT_TRUE(c->use_data_before_expert_parallelism);
  EXPECT_FALSE(ParseTrainConfig(base, 4)->expert_parallel.enabled);

  config["use_data_before_expert_parallelism"] = "yes";
  EXPECT_THAT(ParseTrainConfig(config, 4).status().message(),
              HasSubstr("`use_data_before_expert_parallelism` must be a boolean"));
  config.erase("use_data_before_expert_parallelism");
  config["expert_parallel"]["autoep_size"] = 3;
  EXPECT_THAT(ParseTrainConfig(config, 4).status().message(),
              HasSubstr("Computed edp would be non-integral"));
  config["expert_parallel"]["enabled"] = false;  // not checked while disabled
  EXPECT_TRUE(ParseTrainConfig(config, 4).ok());
  config["expert_parallel"]["autoep_sizee"] = 3;
  EXPECT_THAT(ParseTrainConfig(config, 4).status().message(),
              HasSubstr("did you mean `expert_parallel.autoep_size`?"));
}

TEST(AutoEpConfigTest, FixtureDsConfigs) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  const std::string source = root != nullptr ? root : ".";
  for (const char* name : {"autoep_deepseek_v3_s1_fp32_dp4_ep4", "autoep_mixtral_s2_bf16_dp4_ep2",
                           "autoep_mixtral_s2_fp32_dp4_ep2", "autoep_mixtral_s3_fp32_dp4_ep2",
                           "autoep_qwen3_s2_fp32_dp2_ep1", "autoep_qwen3_s3_fp32_dp4_ep2"}) {
    std::ifstream in(absl::StrCat(source, "/fixtures/deepspeed/", name, "/manifest.json"));
    if (!in.good()) GTEST_SKIP() << "fixtures not found under " << source;
    const json manifest = json::parse(in);
    absl::StatusOr<TrainConfig> c =
        ParseTrainConfig(manifest["ds_config"], manifest["world_size"].get<int>());
    ASSERT_TRUE(c.ok()) << name << ": " << c.status();
    EXPECT_TRUE(c->expert_parallel.enabled) << name;
    EXPECT_FALSE(c->expert_parallel.use_grouped_mm) << name;
  }
}

}  // namespace
}  // namespace ucp::runtime
