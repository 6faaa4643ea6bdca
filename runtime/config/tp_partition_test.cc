#include "runtime/config/tp_partition.h"

#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/config/ds_config.h"

namespace ucp::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Pieces = std::vector<std::pair<int64_t, int64_t>>;

// The AutoTP fixtures' Llama shape (6 query / 2 KV heads of 4, hidden 24, intermediate 40,
// vocab 53), one layer, untied lm_head, without base_model_tp_plan (Transformers' llama plan).
const nlohmann::json kLlama = {{"model_type", "llama"},
                               {"num_attention_heads", 6},
                               {"num_key_value_heads", 2},
                               {"tie_word_embeddings", false}};

std::vector<TpParamInfo> LlamaParams(bool qkv_bias = false) {
  std::vector<TpParamInfo> p = {{"model.embed_tokens.weight", {53, 24}}};
  const std::string l = "model.layers.0.";
  for (auto [n, out] : {std::pair{"q", 24}, {"k", 8}, {"v", 8}}) {
    p.push_back({l + "self_attn." + n + "_proj.weight", {out, 24}});
    if (qkv_bias) p.push_back({l + "self_attn." + n + "_proj.bias", {out}});
  }
  p.push_back({l + "self_attn.o_proj.weight", {24, 24}});
  p.push_back({l + "mlp.gate_proj.weight", {40, 24}});
  p.push_back({l + "mlp.up_proj.weight", {40, 24}});
  p.push_back({l + "mlp.down_proj.weight", {24, 40}});
  p.push_back({l + "input_layernorm.weight", {24}});
  p.push_back({l + "post_attention_layernorm.weight", {24}});
  p.push_back({"model.norm.weight", {24}});
  p.push_back({"lm_head.weight", {53, 24}});
  return p;
}

// The ds_config's tensor_parallel block, parsed as ucp train does (world 2, tp 2).
absl::StatusOr<TpPartitionSettings> Settings(const nlohmann::json& tp_block) {
  nlohmann::json tp = tp_block;
  tp["autotp_size"] = 2;
  absl::StatusOr<TrainConfig> c =
      ParseTrainConfig({{"train_micro_batch_size_per_gpu", 1}, {"tensor_parallel", tp}}, 2);
  if (!c.ok()) return c.status();
  return c->tp_partition;
}

const TpParamSplit& SplitOf(const TpPartition& p, const std::vector<TpParamInfo>& params,
                            const std::string& name) {
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].name == name) return p.splits[i];
  }
  ADD_FAILURE() << "no " << name;
  static const TpParamSplit kNone;
  return kNone;
}

TEST(TpPartition, PresetTakesPriorityOverTheHfPlan) {
  const auto params = LlamaParams();
  // No config keys: the Transformers plan, lm_head vocabulary-split with a gathered output.
  TpPartition hf = PartitionForTp({}, kLlama, params, 2).value();
  EXPECT_EQ(hf.source, "hf_tp_plan");
  EXPECT_EQ(SplitOf(hf, params, "lm_head.weight").style, TpStyle::kColumnGather);
  EXPECT_THAT(SplitOf(hf, params, "lm_head.weight").widths[0], ElementsAre(27, 26));
  // preset_model llama (§2.2 first): the same layers, lm_head left replicated.
  TpPartition preset =
      PartitionForTp(Settings({{"preset_model", "llama"}}).value(), kLlama, params, 2).value();
  EXPECT_EQ(preset.source, "partition_config");
  EXPECT_FALSE(SplitOf(preset, params, "lm_head.weight").sharded());
  const TpParamSplit& q = SplitOf(preset, params, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(q.style, TpStyle::kColumn);
  EXPECT_THAT(q.Pieces(1), ElementsAre(std::pair<int64_t, int64_t>{12, 12}));
  const TpParamSplit& o = SplitOf(preset, params, "model.layers.0.self_attn.o_proj.weight");
  EXPECT_TRUE(o.row);
  EXPECT_EQ(o.dim, 1);
  EXPECT_THAT(o.widths[0], ElementsAre(12, 12));  // on the KV-head groups of q
  EXPECT_FALSE(SplitOf(preset, params, "model.embed_tokens.weight").sharded());
  EXPECT_FALSE(SplitOf(preset, params, "model.norm.weight").sharded());
}

TEST(TpPartition, CustomSpecsComeBeforeThePresetOrAlone) {
  const auto params = LlamaParams();
  const nlohmann::json skip_mlp = {
      {"layer_specs", {{{"patterns", {R"(.*\.mlp\..*)"}}, {"partition_type", "skip"}}}}};
  // use_default_specs (default): custom first, then the preset's.
  TpPartition merged =
      PartitionForTp(Settings({{"preset_model", "LLaMA"}, {"partition_config", skip_mlp}}).value(),
                     kLlama, params, 2)
          .value();
  EXPECT_FALSE(SplitOf(merged, params, "model.layers.0.mlp.gate_proj.weight").sharded());
  EXPECT_TRUE(SplitOf(merged, params, "model.layers.0.self_attn.q_proj.weight").sharded());
  // use_default_specs false: the custom specs only; unmatched linears stay replicated.
  nlohmann::json alone = skip_mlp;
  alone["use_default_specs"] = false;
  alone["layer_specs"].push_back(
      {{"patterns", {R"(.*o_proj\.weight$)"}}, {"partition_type", "row"}});
  TpPartition custom =
      PartitionForTp(Settings({{"preset_model", "llama"}, {"partition_config", alone}}).value(),
                     kLlama, params, 2)
          .value();
  EXPECT_FALSE(SplitOf(custom, params, "model.layers.0.self_attn.q_proj.weight").sharded());
  EXPECT_TRUE(SplitOf(custom, params, "model.layers.0.self_attn.o_proj.weight").row);
  // model_types filters a spec (case-insensitive).
  nlohmann::json typed = {
      {"layer_specs", {{{"patterns", {R"(.*q_proj\.weight$)"}}, {"model_types", {"Qwen2"}}}}}};
  TpPartition other =
      PartitionForTp(Settings({{"partition_config", typed}}).value(), kLlama, params, 2).value();
  EXPECT_FALSE(SplitOf(other, params, "model.layers.0.self_attn.q_proj.weight").sharded());
}

TEST(TpPartition, HeuristicWithoutATpPlan) {
  EXPECT_EQ(HeuristicPartitionType("model.layers.0.self_attn.o_proj"), TpPartitionType::kRow);
  EXPECT_EQ(HeuristicPartitionType("model.layers.0.mlp.down_proj"), TpPartitionType::kRow);
  EXPECT_EQ(HeuristicPartitionType("model.layers.0.mlp.up_proj"), TpPartitionType::kColumn);
  EXPECT_EQ(HeuristicPartitionType("model.layers.0.self_attn.k_proj"), TpPartitionType::kColumn);
  EXPECT_EQ(HeuristicPartitionType("model.layers.0.mlp.gate"), TpPartitionType::kSkip);
  EXPECT_EQ(HeuristicPartitionType("model.layers.0.self_attn.q_a_proj"), TpPartitionType::kSkip);
  EXPECT_EQ(HeuristicPartitionType("model.layers.0.block_sparse_moe.experts.3.w2"),
            TpPartitionType::kRow);
  nlohmann::json c = kLlama;
  c["base_model_tp_plan"] = nullptr;  // a model without a tp_plan
  const auto params = LlamaParams();
  TpPartition h = PartitionForTp({}, c, params, 2).value();
  EXPECT_EQ(h.source, "heuristic");
  EXPECT_TRUE(SplitOf(h, params, "model.layers.0.mlp.down_proj.weight").row);
  EXPECT_EQ(SplitOf(h, params, "model.layers.0.mlp.gate_proj.weight").style, TpStyle::kColumn);
  EXPECT_FALSE(SplitOf(h, params, "lm_head.weight").sharded());  // not in training
  // A tp_plan entry that splits the embedding is refused like a spec.
  nlohmann::json embed = kLlama;
  embed["base_model_tp_plan"] = {{"embed_tokens", "rowwise"}};
  EXPECT_THAT(std::string(PartitionForTp({}, embed, params, 2).status().message()),
              HasSubstr("the tp_plan splits the embedding model.embed_tokens.weight"));
}

TEST(TpPartition, EqualSubParamsSplitEachHalf) {
  const auto params = LlamaParams();
  nlohmann::json pc = {{"layer_specs",
                        {{{"patterns", {R"(.*(gate|up)_proj\.weight$)"}}, {"shape", {2, -1}}},
                         {{"patterns", {R"(.*down_proj\.weight$)"}},
                          {"partition_type", "row"},
                          {"shape", {-1, 2}}}}}};
  TpPartition p =
      PartitionForTp(Settings({{"partition_config", pc}}).value(), kLlama, params, 2).value();
  const TpParamSplit& gate = SplitOf(p, params, "model.layers.0.mlp.gate_proj.weight");
  EXPECT_TRUE(gate.sub_params);
  EXPECT_THAT(gate.widths, ElementsAre(ElementsAre(10, 10), ElementsAre(10, 10)));
  // [gate_r ; up_r]: rank 0 holds rows 0-9 and 20-29, rank 1 rows 10-19 and 30-39.
  EXPECT_EQ(gate.Pieces(0), (Pieces{{0, 10}, {20, 10}}));
  EXPECT_EQ(gate.Pieces(1), (Pieces{{10, 10}, {30, 10}}));
  EXPECT_EQ(gate.published_shape, nlohmann::json::parse("[[20, 20], -1]"));
  const TpParamSplit& down = SplitOf(p, params, "model.layers.0.mlp.down_proj.weight");
  EXPECT_TRUE(down.row);
  EXPECT_EQ(down.dim, 1);
  EXPECT_EQ(down.partition_dim, 1);
  EXPECT_EQ(down.Pieces(1), (Pieces{{10, 10}, {30, 10}}));
  EXPECT_EQ(down.published_shape, nlohmann::json::parse("[-1, [20, 20]]"));
}

TEST(TpPartition, UnequalSubParamsSplitOnKvHeads) {
  // A fused q|k|v weight [24 + 8 + 8, 24] with `[[24, 8, 8], -1]`: each sub-parameter cut on
  // the 2 KV-head groups, a bias the same rows (§2.4, _bias_subparam_shape_spec).
  const std::vector<TpParamInfo> params = {{"model.layers.0.self_attn.qkv_proj.weight", {40, 24}},
                                           {"model.layers.0.self_attn.qkv_proj.bias", {40}}};
  nlohmann::json pc = {
      {"layer_specs", {{{"patterns", {R"(.*qkv_proj\.weight$)"}}, {"shape", {{24, 8, 8}, -1}}}}}};
  TpPartition p =
      PartitionForTp(Settings({{"partition_config", pc}}).value(), kLlama, params, 2).value();
  const TpParamSplit& w = p.splits[0];
  EXPECT_THAT(w.widths, ElementsAre(ElementsAre(12, 12), ElementsAre(4, 4), ElementsAre(4, 4)));
  EXPECT_EQ(w.Pieces(1), (Pieces{{12, 12}, {28, 4}, {36, 4}}));
  EXPECT_EQ(w.Width(1), 20);
  const TpParamSplit& b = p.splits[1];
  EXPECT_EQ(b.Pieces(0), (Pieces{{0, 12}, {24, 4}, {32, 4}}));
  EXPECT_EQ(b.published_shape, nlohmann::json::parse("[[24, 8, 8]]"));
  // A 3-D view (2 blocks of 20 rows) cut along its middle dim: 2 x 2 pieces of 5 rows.
  nlohmann::json blocks = {{"layer_specs",
                            {{{"patterns", {R"(.*qkv_proj\.weight$)"}},
                              {"shape", {2, {10, 10}, 24}},
                              {"partition_dim", 1}}}}};
  TpPartition q =
      PartitionForTp(Settings({{"partition_config", blocks}}).value(), kLlama, params, 2).value();
  EXPECT_EQ(q.splits[0].Pieces(1), (Pieces{{5, 5}, {15, 5}, {25, 5}, {35, 5}}));
}

TEST(TpPartition, ShapesThatDoNotFitAreRefusedByName) {
  const auto params = LlamaParams();
  auto error = [&](const nlohmann::json& spec) {
    absl::StatusOr<TpPartitionSettings> s =
        Settings({{"partition_config", {{"layer_specs", {spec}}}}});
    if (!s.ok()) return std::string(s.status().message());
    return std::string(PartitionForTp(*s, kLlama, params, 2).status().message());
  };
  const std::string gate = R"(.*gate_proj\.weight$)";
  EXPECT_THAT(error({{"patterns", {gate}}, {"shape", {3, -1}}}),
              HasSubstr("not divisible by sub-param count 3"));
  EXPECT_THAT(error({{"patterns", {gate}}, {"shape", {-1, 12}}}),
              HasSubstr("must match weight input dim 24"));
  EXPECT_THAT(error({{"patterns", {gate}}, {"shape", {2, {12, 12}}}}),
              HasSubstr("nested list is only allowed at partition_dim 0"));
  EXPECT_THAT(error({{"patterns", {gate}}, {"shape", {2, -1}}, {"gather_output", true}}),
              HasSubstr("does not support shaped sub-parameter layers"));
  EXPECT_THAT(error({{"patterns", {gate}}, {"shape", {40, {12, 12}}}, {"partition_dim", 1}}),
              HasSubstr("column spec with partition_dim 1 cuts the weight's input dimension"));
  EXPECT_THAT(error({{"patterns", {gate}}, {"grad_allreduce", true}}),
              HasSubstr("applies to skip specs only"));
  EXPECT_THAT(error({{"patterns", {"("}}}),
              HasSubstr("layer_specs[0].patterns[0]` is not a valid"));
  EXPECT_THAT(error({{"patterns", {gate}}, {"partition_typ", "row"}}), HasSubstr("did you mean"));
  EXPECT_THAT(error({{"patterns", {R"(.*embed_tokens\.weight$)"}}}),
              HasSubstr("splits the embedding model.embed_tokens.weight"));
  nlohmann::json strict = {{"strict_mode", true},
                           {"layer_specs", {{{"patterns", {R"(.*_proj\.weight$)"}}}}}};
  EXPECT_THAT(std::string(PartitionForTp(Settings({{"partition_config", strict}}).value(), kLlama,
                                         params, 2)
                              .status()
                              .message()),
              HasSubstr("no layer spec matches lm_head.weight"));
}

TEST(TpPartition, PresetsAndGradAllreduce) {
  const auto params = LlamaParams();
  EXPECT_THAT(std::string(Settings({{"preset_model", "lama"}}).status().message()),
              HasSubstr("did you mean \"llama\""));
  // A preset for modules ucp does not build (BLOOM's fused query_key_value) matches nothing.
  EXPECT_THAT(
      std::string(PartitionForTp(Settings({{"preset_model", "bloom"}}).value(), kLlama, params, 2)
                      .status()
                      .message()),
      HasSubstr("preset_model \"bloom\" matches none of the model's parameters"));
  std::vector<TpParamInfo> qwen3 = params;
  qwen3.push_back({"model.layers.0.self_attn.q_norm.weight", {4}});
  nlohmann::json pc = {{"layer_specs",
                        {{{"patterns", {R"(.*q_norm\.weight$)"}},
                          {"partition_type", "skip"},
                          {"grad_allreduce", true}}}}};
  TpPartition p =
      PartitionForTp(Settings({{"preset_model", "qwen2"}, {"partition_config", pc}}).value(),
                     kLlama, qwen3, 2)
          .value();
  EXPECT_EQ(p.splits.back().style, TpStyle::kGradAllreduce);
  EXPECT_FALSE(p.splits.back().sharded());
  EXPECT_EQ(SplitOf(p, qwen3, "model.layers.0.mlp.up_proj.weight").style, TpStyle::kColumn);
  // A column bias follows its weight, a row weight's bias stays replicated.
  const auto biased = LlamaParams(/*qkv_bias=*/true);
  TpPartition b =
      PartitionForTp(Settings({{"preset_model", "qwen2"}}).value(), kLlama, biased, 2).value();
  EXPECT_THAT(SplitOf(b, biased, "model.layers.0.self_attn.k_proj.bias").Pieces(1),
              ElementsAre(std::pair<int64_t, int64_t>{4, 4}));
}

}  // namespace
}  // namespace ucp::runtime
