#include "ucp/ucp_layout.h"

#include "formats/torch/value_json.h"
#include "gtest/gtest.h"

namespace ucp {
namespace {

TEST(UcpLayoutTest, ParamNamesThatEscapeAreRejected) {
  EXPECT_TRUE(ValidateParamName("model.layers.0.mlp.experts.w1").ok());
  for (absl::string_view bad :
       {absl::string_view(""), absl::string_view("."), absl::string_view(".."),
        absl::string_view("a/b"), absl::string_view("/etc"), absl::string_view("a\\b"),
        absl::string_view("a\0b", 3)}) {
    EXPECT_EQ(ValidateParamName(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(UcpLayoutTest, Paths) {
  EXPECT_EQ(ParamStatePath("embed.weight", kFp32State), "zero/embed.weight/fp32.pt");
  EXPECT_EQ(OptimizerStatePath(), "zero/optimizer_state.pt");
  EXPECT_EQ(ArchiveRootFor("zero/embed.weight/exp_avg_sq.pt"), "exp_avg_sq");
  EXPECT_EQ(ArchiveRootFor("mp_rank_00_model_states.pt"), "mp_rank_00_model_states");
}

std::string Keys(const Value& dict) {
  std::string out;
  for (const auto& [k, v] : dict.entries()) out += k->str() + ",";
  return out;
}

TEST(UcpLayoutTest, DictFormsKeepDeepSpeedsKeyOrder) {
  ValueArena arena;
  ParamStateSpec spec{.shape = Shape({3, 4}), .storage_numel = 12, .requires_grad = true};
  absl::StatusOr<ParamStateTree> t = BuildParamStateTree(arena, spec);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(Keys(*t->root), "cat_dim,param,");
  EXPECT_TRUE(t->root->Get("param")->tensor().requires_grad);
  EXPECT_EQ(t->root->Get("param")->tensor().stride, (std::vector<int64_t>{4, 1}));

  spec.cat_dim = 0;
  spec.n_sub_params = 2;
  spec.vocab_tensor = true;
  spec.shape = Shape({2, 4});  // a vocabulary view keeps the padded storage
  t = BuildParamStateTree(arena, spec);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(Keys(*t->root), "cat_dim,param_n_sub_params,vocab_tensor,param,");
  EXPECT_EQ(t->storage->numel, 12);

  spec.cat_dim.reset();
  spec.n_sub_params.reset();
  spec.vocab_tensor = false;
  t = BuildParamStateTree(arena, spec);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(Keys(*t->root), "param,");

  spec.form = ParamFileForm::kExpertDict;
  spec.ep_num_experts = 8;
  t = BuildParamStateTree(arena, spec);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(Keys(*t->root), "param,cat_dim,is_expert_param,ep_num_experts,");
  EXPECT_EQ(t->root->Get("ep_num_experts")->int_value(), 8);

  spec.form = ParamFileForm::kRawTensor;
  t = BuildParamStateTree(arena, spec);
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->root->is(formats::torch::ValueKind::kTensor));

  spec.storage_numel = 7;  // fewer elements than the shape
  EXPECT_EQ(BuildParamStateTree(arena, spec).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ucp
