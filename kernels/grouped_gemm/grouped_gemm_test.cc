#include "kernels/grouped_gemm/grouped_gemm.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace ucp::kernels {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// The three forms as triple loops in double, straight from the header's formulas.
std::vector<double> Naive(GroupedGemmForm form, const std::vector<int32_t>& offs, int64_t m,
                          int64_t n, int64_t k, const std::vector<float>& x,
                          const std::vector<float>& w, const std::vector<float>& dy) {
  const int64_t g_count = offs.size();
  std::vector<double> out(form == GroupedGemmForm::kForward        ? m * n
                          : form == GroupedGemmForm::kBackwardData ? m * k
                                                                   : g_count * n * k);
  int64_t r0 = 0;
  for (int64_t g = 0; g < g_count; ++g) {
    const float* wg = w.data() + g * n * k;
    for (int64_t r = r0; r < offs[g]; ++r) {
      for (int64_t a = 0; a < n; ++a) {
        for (int64_t b = 0; b < k; ++b) {
          if (form == GroupedGemmForm::kForward)
            out[r * n + a] += double{x[r * k + b]} * wg[a * k + b];
          if (form == GroupedGemmForm::kBackwardData)
            out[r * k + b] += double{dy[r * n + a]} * wg[a * k + b];
          if (form == GroupedGemmForm::kBackwardWeight) {
            out[g * n * k + a * k + b] += double{dy[r * n + a]} * x[r * k + b];
          }
        }
      }
    }
    r0 = offs[g];
  }
  return out;
}

struct Case {
  int64_t n, k;
  std::vector<int32_t> sizes;  // per group; 0 allowed
};

class GroupedGemmTest : public ::testing::TestWithParam<GroupedGemmForm> {};

TEST_P(GroupedGemmTest, MatchesNaiveF32) {
  // Sizes straddle every blocking edge: MR=4, NR=16, MC=64, NC=128, KC=256.
  for (const Case& c : {Case{3, 5, {2, 0, 7}}, Case{130, 257, {1, 70, 0, 8}},
                        Case{16, 300, {65, 64}}, Case{200, 40, {0, 0, 9}}}) {
    std::vector<int32_t> offs;
    int64_t m = 0;
    for (int32_t s : c.sizes) offs.push_back(static_cast<int32_t>(m += s));
    m += 3;  // rows past offs[G-1] are not touched
    const int64_t g_count = offs.size();
    const std::vector<float> x = Random(m * c.k, 1), w = Random(g_count * c.n * c.k, 2),
                             dy = Random(m * c.n, 3);
    const std::vector<double> want = Naive(GetParam(), offs, m, c.n, c.k, x, w, dy);
    for (int32_t threads : {1, 3}) {
      std::vector<float> out(want.size(), 42.0f);
      GroupedGemmParams p{GetParam(),
                          ElemType::kF32,
                          static_cast<int32_t>(g_count),
                          m,
                          c.n,
                          c.k,
                          offs.data(),
                          x.data(),
                          w.data(),
                          dy.data(),
                          out.data(),
                          threads};
      ASSERT_TRUE(kernels::Run(p).ok());
      const bool rows_out = GetParam() != GroupedGemmForm::kBackwardWeight;
      const int64_t cols = GetParam() == GroupedGemmForm::kForward ? c.n : c.k;
      for (size_t i = 0; i < want.size(); ++i) {
        if (rows_out && static_cast<int64_t>(i) >= offs.back() * cols) {
          EXPECT_EQ(out[i], 42.0f) << "row past offs written, i=" << i;
          continue;
        }
        ASSERT_NEAR(out[i], want[i], 1e-4 * (1 + std::abs(want[i]))) << "i=" << i;
      }
    }
  }
}

TEST_P(GroupedGemmTest, Bf16StorageAccumulatesInF32) {
  const int64_t n = 24, k = 40;
  const std::vector<int32_t> offs = {5, 5, 33};
  const int64_t m = 33;
  std::vector<float> x = Random(m * k, 4), w = Random(3 * n * k, 5), dy = Random(m * n, 6);
  auto to_bf16 = [](std::vector<float>& v) {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = Bf16ToFloat(h[i] = FloatToBf16(v[i]));
    return h;
  };
  const std::vector<uint16_t> xh = to_bf16(x), wh = to_bf16(w), dyh = to_bf16(dy);
  const std::vector<double> want = Naive(GetParam(), offs, m, n, k, x, w, dy);
  std::vector<uint16_t> out(want.size());
  GroupedGemmParams p{GetParam(),  ElemType::kBF16, 3,         m,          n,         k,
                      offs.data(), xh.data(),       wh.data(), dyh.data(), out.data()};
  ASSERT_TRUE(kernels::Run(p).ok());
  for (size_t i = 0; i < want.size(); ++i) {
    // One bf16 rounding of an fp32 sum: within 2^-8 relative (plus fp32 accumulation noise).
    ASSERT_NEAR(Bf16ToFloat(out[i]), want[i], std::abs(want[i]) / 256 + 1e-5) << "i=" << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Forms, GroupedGemmTest,
                         ::testing::Values(GroupedGemmForm::kForward,
                                           GroupedGemmForm::kBackwardData,
                                           GroupedGemmForm::kBackwardWeight));

TEST(GroupedGemmTest, EmptyGroupGetsZeroWeightGradient) {
  const std::vector<int32_t> offs = {0, 2};
  const std::vector<float> x = {1, 2, 3, 4}, dy = {1, 1, 1, 1};  // m=2, n=2, k=2
  std::vector<float> dw(8, 7.0f);
  GroupedGemmParams p{GroupedGemmForm::kBackwardWeight,
                      ElemType::kF32,
                      2,
                      2,
                      2,
                      2,
                      offs.data(),
                      x.data(),
                      nullptr,
                      dy.data(),
                      dw.data()};
  ASSERT_TRUE(kernels::Run(p).ok());
  EXPECT_EQ(dw, (std::vector<float>{0, 0, 0, 0, 4, 6, 4, 6}));
}

TEST(GroupedGemmTest, RejectsHostileParams) {
  const std::vector<int32_t> offs = {2, 4};
  std::vector<float> x(8), w(8), y(8);
  const GroupedGemmParams good{GroupedGemmForm::kForward,
                               ElemType::kF32,
                               2,
                               4,
                               1,
                               2,
                               offs.data(),
                               x.data(),
                               w.data(),
                               nullptr,
                               y.data()};
  ASSERT_TRUE(kernels::Run(good).ok());
  auto bad = [&](auto edit) {
    GroupedGemmParams p = good;
    edit(p);
    return kernels::Run(p);
  };
  EXPECT_FALSE(bad([](auto& p) { p.num_groups = 0; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.m = -1; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.k = -2; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.n = int64_t{1} << 40, p.k = int64_t{1} << 40; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.x = nullptr; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.offs = nullptr; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.out = nullptr; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.form = GroupedGemmForm::kBackwardData; }).ok());  // dy null
  EXPECT_FALSE(bad([](auto& p) { p.num_threads = 0; }).ok());
  EXPECT_FALSE(bad([](auto& p) { p.m = 3; }).ok());  // offs[1] = 4 > m
  const std::vector<int32_t> decreasing = {3, 2}, negative = {-1, 4};
  EXPECT_FALSE(bad([&](auto& p) { p.offs = decreasing.data(); }).ok());
  EXPECT_FALSE(bad([&](auto& p) { p.offs = negative.data(); }).ok());
  // CanImplement alone never reads offs (device memory on the CUDA path).
  GroupedGemmParams device_offs = good;
  device_offs.offs = negative.data();
  EXPECT_TRUE(CanImplement(device_offs).ok());
}

}  // namespace
}  // namespace ucp::kernels
