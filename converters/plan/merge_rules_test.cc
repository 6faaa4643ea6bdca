#include "converters/plan/merge_rules.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::converters::plan::internal_plan {
namespace {

deepspeed::UniversalCheckpointInfo Info() {
  deepspeed::UniversalCheckpointInfo u;
  u.tp_replicated_patterns = {R"(.*layernorm\.weight$)"};
  u.average_patterns = {R"(.*\.bias$)", R"(never\.matches)"};
  u.row_parallel_patterns = {R"(.*dense_4h_to_h\.weight$)", R"(.*input_layernorm\.weight$)"};
  u.two_sub_params_cat_dim0_patterns = {R"(.*dense_h_to_4h\.weight$)"};
  u.vocabulary_patterns = {R"(.*word_embeddings\.weight$)"};
  u.original_vocab_size = 50;
  return u;
}

TEST(MergeRulesTest, EvaluatesListsInDeepSpeedsOrder) {
  absl::StatusOr<MergeRules> rules = MergeRules::Create(Info());
  ASSERT_TRUE(rules.ok()) << rules.status();
  absl::StatusOr<ParamKeys> k = rules->ForParam("layers.0.input_layernorm.weight", Shape({8}));
  ASSERT_TRUE(k.ok());
  EXPECT_FALSE(k->cat_dim.has_value());  // replicated: {param} only
  k = rules->ForParam("layers.0.mlp.dense_h_to_4h.weight", Shape({16, 8}));
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->cat_dim, 0);
  EXPECT_EQ(k->n_sub_params, 2);
  k = rules->ForParam("layers.0.mlp.dense_4h_to_h.weight", Shape({8, 16}));
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->cat_dim, 1);
  k = rules->ForParam("embedding.word_embeddings.weight", Shape({64, 8}));
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->cat_dim, 0);
  EXPECT_TRUE(k->vocab_tensor);
  EXPECT_EQ(k->shape, Shape({50, 8}));
  k = rules->ForParam("final.bias", Shape({8}));
  ASSERT_TRUE(k.ok());
  EXPECT_FALSE(k->cat_dim.has_value());  // averaged

  // The row-parallel layernorm pattern was never consulted for a replicated name: unused, like
  // DeepSpeed's lazy if/elif chain.
  EXPECT_EQ(rules->Unused(),
            (std::vector<std::string>{R"(.*input_layernorm\.weight$)", R"(never\.matches)"}));
}

TEST(MergeRulesTest, PatternsAreAnchoredAtTheStartOnly) {
  deepspeed::UniversalCheckpointInfo u;
  u.row_parallel_patterns = {R"(dense)"};
  absl::StatusOr<MergeRules> rules = MergeRules::Create(u);
  ASSERT_TRUE(rules.ok());
  EXPECT_EQ(rules->ForParam("dense.weight", Shape({2, 2}))->cat_dim, 1);    // re.match: prefix
  EXPECT_EQ(rules->ForParam("x.dense.weight", Shape({2, 2}))->cat_dim, 0);  // not a search
}

TEST(MergeRulesTest, Errors) {
  deepspeed::UniversalCheckpointInfo u;
  u.average_patterns = {"a.*", "ab.*"};
  absl::StatusOr<MergeRules> rules = MergeRules::Create(u);
  ASSERT_TRUE(rules.ok());
  EXPECT_EQ(rules->ForParam("abc", Shape({2})).status().code(),
            absl::StatusCode::kFailedPrecondition);
  u.average_patterns = {};
  u.vocabulary_patterns = {"emb"};  // and no original_vocab_size
  rules = MergeRules::Create(u);
  ASSERT_TRUE(rules.ok());
  EXPECT_EQ(rules->ForParam("emb", Shape({4, 2})).status().code(),
            absl::StatusCode::kFailedPrecondition);

  u = {};
  u.tp_replicated_patterns = {"x", "x.*"};
  rules = MergeRules::Create(u);
  ASSERT_TRUE(rules.ok());
  EXPECT_EQ(rules->ForParam("xy", Shape({2})).status().code(),
            absl::StatusCode::kFailedPrecondition);

  u = {};
  u.row_parallel_patterns = {"(unclosed"};
  EXPECT_EQ(MergeRules::Create(u).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MergeRulesTest, TpSlicesMergeByRule) {
  absl::StatusOr<MergeRules> rules = MergeRules::Create(Info());
  ASSERT_TRUE(rules.ok());
  const std::vector<Shape> row = {Shape({8, 6}), Shape({8, 6})};
  absl::StatusOr<ParamKeys> k = rules->ForParam("layers.0.mlp.dense_4h_to_h.weight", row);
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->cat_dim, 1);
  EXPECT_EQ(k->shape, Shape({8, 12}));
  EXPECT_EQ(k->layout.runs.size(), 16u);
  const std::vector<Shape> vocab = {Shape({32, 8}), Shape({32, 8})};
  k = rules->ForParam("embedding.word_embeddings.weight", vocab);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->shape, Shape({50, 8}));
  EXPECT_EQ(k->layout.merged, Shape({64, 8}));
  const std::vector<Shape> fused = {Shape({5, 2}), Shape({5, 2})};  // torch.chunk: 3 + 2 rows each
  k = rules->ForParam("layers.0.mlp.dense_h_to_4h.weight", fused);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->layout.cut.widths, (std::vector<std::vector<int64_t>>{{3, 3}, {2, 2}}));
  const std::vector<Shape> norm = {Shape({8}), Shape({8})};
  k = rules->ForParam("final.bias", norm);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->layout.cut.kind, ucp::TpMergeKind::kAverage);
  k = rules->ForParam("layers.0.input_layernorm.weight", norm);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->layout.cut.kind, ucp::TpMergeKind::kReplicated);
  const std::vector<Shape> unequal = {Shape({8}), Shape({4})};
  EXPECT_EQ(rules->ForParam("final.bias", unequal).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// parameter_with_sub_params: [{'patterns': [p], 'shape': [shape_entry, -1], 'partition_dim': 0}].
struct SubParamsInfo {
  formats::torch::ValueArena arena;
  deepspeed::UniversalCheckpointInfo info;
  SubParamsInfo(const formats::torch::Value* entry, double version,
                const formats::torch::Value* widths) {
    formats::torch::Value* spec = arena.Dict();
    arena.SetItem(spec, "patterns", arena.List({arena.Str("qkv")}));
    arena.SetItem(spec, "shape", arena.List({entry, arena.Int(-1)}));
    arena.SetItem(spec, "partition_dim", arena.Int(0));
    info.sub_params = arena.List({spec});
    info.version = version;
    info.sub_param_shard_widths = widths;
  }
};

TEST(MergeRulesTest, LegacySubParamCountIsNormalised) {
  formats::torch::ValueArena a;
  SubParamsInfo s(a.Int(3), 0.3, nullptr);  // 3 equal sub-params, split evenly over tp
  absl::StatusOr<MergeRules> rules = MergeRules::Create(s.info);
  ASSERT_TRUE(rules.ok()) << rules.status();
  const std::vector<Shape> slices = {Shape({6, 4}), Shape({6, 4})};
  absl::StatusOr<ParamKeys> k = rules->ForParam("qkv", slices);
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_TRUE(k->is_sub_params());
  EXPECT_FALSE(k->cat_dim.has_value());
  EXPECT_EQ(k->legacy_sub_param_sizes, (std::vector<int64_t>{4, 4, 4}));
  EXPECT_EQ(k->shape, Shape({12, 4}));
  EXPECT_THAT(k->layout.runs,
              ::testing::ElementsAre(ucp::TpRun{0, 0, 0, 8}, ucp::TpRun{1, 0, 8, 8},
                                     ucp::TpRun{0, 8, 16, 8}, ucp::TpRun{1, 8, 24, 8},
                                     ucp::TpRun{0, 16, 32, 8}, ucp::TpRun{1, 16, 40, 8}));
  EXPECT_TRUE(rules->Unused().empty());
}

TEST(MergeRulesTest, SubParamWidthsFromVersion04) {
  formats::torch::ValueArena a;
  formats::torch::Value* widths = a.Dict();
  a.SetItem(widths, "qkv",
            a.List({a.List({a.Int(3), a.Int(3)}), a.List({a.Int(2), a.Int(1)}),
                    a.List({a.Int(2), a.Int(1)})}));
  SubParamsInfo s(a.Tuple({a.Int(6), a.Int(3), a.Int(3)}), 0.4, widths);
  absl::StatusOr<MergeRules> rules = MergeRules::Create(s.info);
  ASSERT_TRUE(rules.ok()) << rules.status();
  const std::vector<Shape> slices = {Shape({7, 2}), Shape({5, 2})};
  absl::StatusOr<ParamKeys> k = rules->ForParam("qkv", slices);
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_FALSE(k->legacy_sub_param_sizes.has_value());
  EXPECT_EQ(k->shape, Shape({12, 2}));
  EXPECT_EQ(k->layout.runs.size(), 6u);
  const std::vector<Shape> wrong = {Shape({6, 2}), Shape({6, 2})};  // widths say 7 + 5 rows
  EXPECT_EQ(rules->ForParam("qkv", wrong).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace ucp::converters::plan::internal_plan
