#include "converters/plan/merge_rules.h"

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
  EXPECT_EQ(rules->Unused(), (std::vector<std::string>{R"(.*input_layernorm\.weight$)", R"(never\.matches)"}));
}

TEST(MergeRulesTest, PatternsAreAnchoredAtTheStartOnly) {
  deepspeed::UniversalCheckpointInfo u;
  u.row_parallel_patterns = {R"(dense)"};
  absl::StatusOr<MergeRules> rules = MergeRules::Create(u);
  ASSERT_TRUE(rules.ok());
  EXPECT_EQ(rules->ForParam("dense.weight", Shape({2, 2}))->cat_dim, 1);   // re.match: prefix
  EXPECT_EQ(rules->ForParam("x.dense.weight", Shape({2, 2}))->cat_dim, 0);  // not a search
}

TEST(MergeRulesTest, Errors) {
  deepspeed::UniversalCheckpointInfo u;
  u.average_patterns = {"a.*", "ab.*"};
  absl::StatusOr<MergeRules> rules = MergeRules::Create(u);
  ASSERT_TRUE(rules.ok());
  EXPECT_EQ(rules->ForParam("abc", Shape({2})).status().code(), absl::StatusCode::kFailedPrecondition);
  u.average_patterns = {};
  u.vocabulary_patterns = {"emb"};  // and no original_vocab_size
  rules = MergeRules::Create(u);
  ASSERT_TRUE(rules.ok());
  EXPECT_EQ(rules->ForParam("emb", Shape({4, 2})).status().code(), absl::StatusCode::kFailedPrecondition);

  u = {};
  u.tp_replicated_patterns = {"x", "x.*"};
  rules = MergeRules::Create(u);
  ASSERT_TRUE(rules.ok());
  EXPECT_EQ(rules->ForParam("xy", Shape({2})).status().code(), absl::StatusCode::kFailedPrecondition);

  u = {};
  u.row_parallel_patterns = {"(unclosed"};
  EXPECT_EQ(MergeRules::Create(u).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ucp::converters::plan::internal_plan
