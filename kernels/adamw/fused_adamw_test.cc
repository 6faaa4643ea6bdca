#include "kernels/adamw/fused_adamw.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace ucp::kernels {
namespace {

struct State {
  std::vector<float> p, g, m, v;
};

State RandomState(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  State s{std::vector<float>(n), std::vector<float>(n), std::vector<float>(n),
          std::vector<float>(n)};
  for (int64_t i = 0; i < n; ++i) {
    s.p[i] = d(rng), s.g[i] = 0.1f * d(rng), s.m[i] = 0.01f * d(rng);
    s.v[i] = 1e-4f * std::abs(d(rng));
  }
  return s;
}

FusedAdamWParams Bind(FusedAdamWParams p, State& s) {
  p.numel = s.p.size(), p.param = s.p.data(), p.grad = s.g.data(), p.exp_avg = s.m.data();
  p.exp_avg_sq = s.v.data();
  return p;
}

// deepspeed-runtime.md §4.5 in double: both forms are this one update mathematically.
void NaiveAdam(const FusedAdamWParams& p, double& w, double g, double& m, double& v) {
  if (!p.adam_w_mode) g += p.weight_decay * w;
  m = p.beta1 * m + (1 - p.beta1) * g;
  v = p.beta2 * v + (1 - p.beta2) * g * g;
  const double bc1 = p.bias_correction ? 1 - std::pow(p.beta1, p.step) : 1;
  const double bc2 = p.bias_correction ? 1 - std::pow(p.beta2, p.step) : 1;
  double update = (m / bc1) / (std::sqrt(v / bc2) + p.eps);
  if (p.adam_w_mode) update += p.weight_decay * w;
  w -= p.lr * update;
}

TEST(FusedAdamWTest, BothFormsMatchTheMathInDouble) {
  for (AdamForm form : {AdamForm::kTorch, AdamForm::kFused}) {
    for (bool w_mode : {true, false}) {
      for (bool bias_correction : {true, false}) {
        FusedAdamWParams p;
        p.lr = 1e-2, p.weight_decay = 0.1, p.step = 3, p.form = form;
        p.adam_w_mode = w_mode, p.bias_correction = bias_correction;
        State s = RandomState(1000, 1);
        const State before = s;
        ASSERT_TRUE(kernels::Run(Bind(p, s)).ok());
        for (size_t i = 0; i < s.p.size(); ++i) {
          double w = before.p[i], m = before.m[i], v = before.v[i];
          NaiveAdam(p, w, before.g[i], m, v);
          ASSERT_NEAR(s.p[i], w, 1e-6 * (1 + std::abs(w))) << i;
          ASSERT_NEAR(s.m[i], m, 1e-6 * (1e-3 + std::abs(m))) << i;
          ASSERT_NEAR(s.v[i], v, 1e-6 * (1e-6 + std::abs(v))) << i;
        }
      }
    }
  }
}

// FusedAdam's kernel line by line in float (§4.5, "implement the formula literally in fp32"):
// the reference gives the same bits.
TEST(FusedAdamWTest, FusedFormIsTheLiteralFloatFormula) {
  FusedAdamWParams p;
  p.lr = 3e-3, p.weight_decay = 0.01, p.step = 7, p.form = AdamForm::kFused;
  State s = RandomState(257, 2);
  const State before = s;
  ASSERT_TRUE(kernels::Run(Bind(p, s)).ok());
  const float bc1 = 1 - static_cast<float>(std::pow(0.9, 7.0));
  const float bc2 = 1 - static_cast<float>(std::pow(0.999, 7.0));
  for (size_t i = 0; i < s.p.size(); ++i) {
    const float g = before.g[i], w = before.p[i];
    const float m = std::fma(g, static_cast<float>(1 - 0.9), before.m[i] * 0.9f);
    const float v = std::fma(static_cast<float>(1 - 0.999) * g, g, before.v[i] * 0.999f);
    const float update = std::fma(w, 0.01f, (m / bc1) / (std::sqrt(v / bc2) + 1e-8f));
    EXPECT_EQ(s.m[i], m);
    EXPECT_EQ(s.v[i], v);
    EXPECT_EQ(s.p[i], std::fma(update, -3e-3f, w)) << i;
  }
}

TEST(FusedAdamWTest, ZeroDecayAdamWLeavesParamScaleExact) {
  // torch AdamW multiplies p by float(1 - lr*0) = 1: exact, so Adam and AdamW agree bitwise.
  FusedAdamWParams p;
  State a = RandomState(64, 3), b = a;
  p.adam_w_mode = true;
  ASSERT_TRUE(kernels::Run(Bind(p, a)).ok());
  p.adam_w_mode = false;
  ASSERT_TRUE(kernels::Run(Bind(p, b)).ok());
  EXPECT_EQ(a.p, b.p);
}

TEST(FusedAdamWTest, RejectsHostileParams) {
  State s = RandomState(4, 4);
  const FusedAdamWParams good = Bind(FusedAdamWParams{}, s);
  ASSERT_TRUE(CanImplement(good).ok());
  auto bad = [&](auto edit) {
    FusedAdamWParams p = good;
    edit(p);
    return kernels::Run(p);
  };
  EXPECT_FALSE(bad([](auto& p) { p.numel = -1; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.grad = nullptr; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.exp_avg_sq = nullptr; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.beta1 = 1.0; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.beta2 = -0.1; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.lr = NAN; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.step = 0; }).ok());  // bc1 = 0
  EXPECT_TRUE(bad([](auto& p) { p.step = 0, p.bias_correction = false; }).ok());
  EXPECT_TRUE(bad([](auto& p) { p.numel = 0, p.param = nullptr; }).ok());
}

}  // namespace
}  // namespace ucp::kernels
