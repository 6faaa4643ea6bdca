#include "kernels/router/router_topk.h"

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace ucp::kernels {
namespace {

float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

struct Out {
  std::vector<int64_t> selected;
  std::vector<float> top;
  std::vector<int32_t> hist;
};

Out Route(RouterTopKParams p, const std::vector<float>& logits) {
  Out o{std::vector<int64_t>(p.num_tokens * p.top_k), std::vector<float>(p.num_tokens * p.top_k),
        std::vector<int32_t>(p.num_experts, -5)};
  p.logits = logits.data();
  p.selected = o.selected.data();
  p.top_scores = o.top.data();
  p.tokens_per_expert = o.hist.data();
  EXPECT_TRUE(kernels::Run(p).ok());
  return o;
}

TEST(RouterTopKTest, SoftmaxTiesGoToLowerIndexThenNormAndScale) {
  RouterTopKParams p;
  p.num_tokens = 1, p.num_experts = 4, p.top_k = 2;
  const Out plain = Route(p, {1, 3, 3, 0});
  EXPECT_EQ(plain.selected, (std::vector<int64_t>{1, 2}));
  const float z = std::exp(-2.0f) + 1 + 1 + std::exp(-3.0f);
  EXPECT_FLOAT_EQ(plain.top[0], 1 / z);
  EXPECT_EQ(plain.hist, (std::vector<int32_t>{0, 1, 1, 0}));
  p.route_norm = true, p.route_scale = 2.5f;
  const Out normed = Route(p, {1, 3, 3, 0});
  EXPECT_FLOAT_EQ(normed.top[0], 1.25f);
  EXPECT_FLOAT_EQ(normed.top[1], 1.25f);
}

TEST(RouterTopKTest, BiasSteersChoiceButScoresStayUnbiased) {
  const std::vector<float> bias = {0, 0.1f, 0, 0.2f};
  RouterTopKParams p;
  p.num_tokens = 1, p.num_experts = 4, p.top_k = 2, p.score_func = RouterScoreFunc::kSigmoid;
  p.expert_bias = bias.data();
  const Out o = Route(p, {0, 0, 0, 0});
  EXPECT_EQ(o.selected, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(o.top, (std::vector<float>{0.5f, 0.5f}));
}

// Groups of 2: g0 = (5, -5), g1 = (3, 3), g2 = (4, 0), g3 = (-5, -5), sigmoid scores.
//   max:      g0 > g2 > g1 > g3 -> keep g0, g2 -> top-3 of {0, 1, 4, 5} = 0, 4, 5
//   top2_sum: g1 (1.90) > g2 (1.48) > g0 (1.00) -> keep g1, g2 -> 4, then the tie 2, 3
TEST(RouterTopKTest, GroupLimitedRouting) {
  const std::vector<float> logits = {5, -5, 3, 3, 4, 0, -5, -5};
  RouterTopKParams p;
  p.num_tokens = 1, p.num_experts = 8, p.top_k = 3, p.score_func = RouterScoreFunc::kSigmoid;
  p.num_groups = 4, p.num_limited_groups = 2;
  const Out by_max = Route(p, logits);
  EXPECT_EQ(by_max.selected, (std::vector<int64_t>{0, 4, 5}));
  EXPECT_EQ(by_max.top, (std::vector<float>{Sigmoid(5), Sigmoid(4), 0.5f}));
  p.group_score = RouterGroupScore::kTop2Sum;
  EXPECT_EQ(Route(p, logits).selected, (std::vector<int64_t>{4, 2, 3}));
}

TEST(RouterTopKTest, RandomTokensMatchFullSortAndHistogram) {
  const int64_t t = 50;
  const int32_t e = 16, k = 4;
  std::mt19937 rng(7);
  std::normal_distribution<float> d;
  std::vector<float> logits(t * e), scores(t * e);
  for (float& x : logits) x = d(rng);
  RouterTopKParams p;
  p.num_tokens = t, p.num_experts = e, p.top_k = k, p.scores = scores.data();
  const Out o = Route(p, logits);
  std::vector<int32_t> hist(e);
  for (int64_t i = 0; i < t; ++i) {
    std::vector<int32_t> idx(e);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(),
                     [&](int a, int b) { return logits[i * e + a] > logits[i * e + b]; });
    double z = 0;
    for (int32_t j = 0; j < e; ++j) z += std::exp(double{logits[i * e + j]});
    for (int32_t j = 0; j < k; ++j) {
      ASSERT_EQ(o.selected[i * k + j], idx[j]) << "token " << i;
      EXPECT_NEAR(o.top[i * k + j], std::exp(double{logits[i * e + idx[j]]}) / z, 1e-6);
      EXPECT_EQ(o.top[i * k + j], scores[i * e + idx[j]]);
      ++hist[idx[j]];
    }
  }
  EXPECT_EQ(o.hist, hist);
}

TEST(RouterTopKTest, RejectsHostileParams) {
  std::vector<float> logits(8);
  std::vector<int64_t> sel(8);
  std::vector<float> top(8);
  std::vector<int32_t> hist(8);
  RouterTopKParams good;
  good.num_tokens = 1, good.num_experts = 8, good.top_k = 2, good.logits = logits.data();
  good.selected = sel.data(), good.top_scores = top.data(), good.tokens_per_expert = hist.data();
  ASSERT_TRUE(kernels::Run(good).ok());
  auto bad = [&](auto edit) {
    RouterTopKParams p = good;
    edit(p);
    return CanImplement(p);
  };
  EXPECT_FALSE(bad([](auto& p) { p.top_k = 9; }).ok());  // k > E
  EXPECT_FALSE(bad([](auto& p) { p.top_k = 0; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.num_tokens = -1; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.num_groups = 3, p.num_limited_groups = 1; }).ok());  // 3 ∤ 8
  EXPECT_FALSE(bad([](auto& p) { p.num_groups = 4, p.num_limited_groups = 5; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.num_groups = 4, p.num_limited_groups = 0; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.num_groups = 4, p.num_limited_groups = 1, p.top_k = 3; }).ok());
  EXPECT_FALSE(bad([](auto& p) {
                 p.num_groups = 8, p.num_limited_groups = 2,
                 p.group_score = RouterGroupScore::kTop2Sum;
               }).ok());  // one expert per group
  EXPECT_FALSE(bad([](auto& p) { p.logits = nullptr; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.tokens_per_expert = nullptr; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.route_scale = NAN; }).ok());
  EXPECT_TRUE(bad([](auto& p) { p.num_groups = 4, p.num_limited_groups = 1; }).ok());
}

}  // namespace
}  // namespace ucp::kernels
