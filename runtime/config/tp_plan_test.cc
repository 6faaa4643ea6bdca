#include "runtime/config/tp_plan.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The AutoTP fixtures' Llama (fixtures/deepspeed_tp): 6 query / 2 KV heads of 4, intermediate 40,
// vocab 53, its config.json's base_model_tp_plan; DeepSpeed's per-rank shapes (manifest).
const nlohmann::json kLlama = {{"model_type", "llama"},
                               {"num_attention_heads", 6},
                               {"num_key_value_heads", 2},
                               {"tie_word_embeddings", false},
                               {"base_model_tp_plan",
                                {{"layers.*.self_attn.q_proj", "colwise"},
                                 {"layers.*.self_attn.k_proj", "colwise"},
                                 {"layers.*.self_attn.v_proj", "colwise"},
                                 {"layers.*.self_attn.o_proj", "rowwise"},
                                 {"layers.*.mlp.gate_proj", "colwise"},
                                 {"layers.*.mlp.up_proj", "colwise"},
                                 {"layers.*.mlp.down_proj", "rowwise"}}}};

TEST(TpPlan, StylesOfTheLlamaPlan) {
  const TpPlan plan = TpPlanOf(kLlama).value();
  EXPECT_EQ(StyleOf(plan, "model.layers.1.self_attn.q_proj.weight"), TpStyle::kColumn);
  EXPECT_EQ(StyleOf(plan, "model.layers.0.self_attn.o_proj.weight"), TpStyle::kRow);
  EXPECT_EQ(StyleOf(plan, "model.layers.0.self_attn.o_proj.bias"), TpStyle::kReplicated);
  EXPECT_EQ(StyleOf(plan, "model.layers.0.mlp.down_proj.weight"), TpStyle::kRow);
  EXPECT_EQ(StyleOf(plan, "lm_head.weight"), TpStyle::kColumnGather);
  EXPECT_EQ(StyleOf(plan, "model.embed_tokens.weight"), TpStyle::kReplicated);
  EXPECT_EQ(StyleOf(plan, "model.layers.0.input_layernorm.weight"), TpStyle::kReplicated);
  nlohmann::json tied = kLlama;
  tied["tie_word_embeddings"] = true;
  EXPECT_EQ(StyleOf(TpPlanOf(tied).value(), "lm_head.weight"), TpStyle::kReplicated);
}

TEST(TpPlan, ShardSizesAreDeepSpeeds) {
  EXPECT_THAT(ShardSizes(24, 2, "model.layers.0.self_attn.q_proj.weight", 2), ElementsAre(12, 12));
  EXPECT_THAT(ShardSizes(8, 2, "model.layers.0.self_attn.k_proj.weight", 2), ElementsAre(4, 4));
  EXPECT_THAT(ShardSizes(40, 2, "model.layers.0.mlp.gate_proj.weight", 2), ElementsAre(20, 20));
  EXPECT_THAT(ShardSizes(53, 2, "lm_head.weight", 2), ElementsAre(27, 26));
  // §2.4: 6 KV heads on 4 ranks: 2, 2, 1, 1 head groups.
  EXPECT_THAT(ShardSizes(48, 4, "model.layers.0.self_attn.k_proj.weight", 6),
              ElementsAre(16, 16, 8, 8));
  // Not divisible by the KV heads: near-even.
  EXPECT_THAT(ShardSizes(7, 2, "model.layers.0.self_attn.q_proj.weight", 2), ElementsAre(4, 3));
}

TEST(TpPlan, UnsupportedStylesAndModelsAreRefusedByName) {
  nlohmann::json c = kLlama;
  c["base_model_tp_plan"]["layers.*.mlp.up_proj"] = "local_colwise";
  EXPECT_THAT(std::string(TpPlanOf(c).status().message()),
              HasSubstr("base_model_tp_plan[\"layers.*.mlp.up_proj\"] = \"local_colwise\""));
  EXPECT_FALSE(TpPlanOf({{"model_type", "gpt2"}}).ok());
  const TpPlan qwen3 = TpPlanOf({{"model_type", "qwen3"}, {"num_key_value_heads", 2}}).value();
  EXPECT_EQ(StyleOf(qwen3, "model.layers.0.self_attn.k_norm.weight"), TpStyle::kGradAllreduce);
}

}  // namespace
}  // namespace ucp::runtime
