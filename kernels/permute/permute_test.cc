#include "kernels/permute/permute.h"

#include <vector>

#include "gtest/gtest.h"

namespace ucp::kernels {
namespace {

// ep=2 sources, E_l=3 experts; expert 1 gets no row from anyone, expert 2 gets 9 (> 8).
//   c = [s0: 2 0 3 | s1: 1 0 6], N = 12, start = [0 2 2 5 6 6]
//   m = [8 8 16], offs = [8 16 32], length = round_up(12 + 3*8, 8) = 40
TEST(PermuteIndicesTest, TwoSourcesAndAnEmptyExpert) {
  const std::vector<int32_t> counts = {2, 0, 3, 1, 0, 6};
  std::vector<int32_t> perm(PermuteLength(12, 3), 99), sizes(3), offs(3);
  ASSERT_EQ(perm.size(), 40u);
  ASSERT_TRUE(kernels::Run(PermuteIndicesParams{2, 3, counts.data(), 12, perm.data(), sizes.data(),
                                                offs.data()})
                  .ok());
  const int32_t _ = -1;
  const std::vector<int32_t> want = {0,  1, 5, _, _, _, _, _,  // expert 0: s0 rows 0-1, s1 row 5
                                     _,  _, _, _, _, _, _, _,  // expert 1: 8 padding rows
                                     2,  3, 4, 6, 7, 8, 9, 10,
                                     11, _, _, _, _, _, _, _,   // expert 2: s0 2-4, s1 6-11
                                     _,  _, _, _, _, _, _, _};  // round_up slack
  EXPECT_EQ(perm, want);
  EXPECT_EQ(sizes, (std::vector<int32_t>{8, 8, 16}));
  EXPECT_EQ(offs, (std::vector<int32_t>{8, 16, 32}));
}

TEST(PermuteIndicesTest, ExactMultipleOfEightGetsNoPadding) {
  const std::vector<int32_t> counts = {8, 16};  // ep=1
  std::vector<int32_t> perm(PermuteLength(24, 2)), sizes(2), offs(2);
  ASSERT_TRUE(kernels::Run(PermuteIndicesParams{1, 2, counts.data(), 24, perm.data(), sizes.data(),
                                                offs.data()})
                  .ok());
  EXPECT_EQ(sizes, (std::vector<int32_t>{8, 16}));
  EXPECT_EQ(offs, (std::vector<int32_t>{8, 24}));
  for (int32_t i = 0; i < 24; ++i) EXPECT_EQ(perm[i], i);
  for (size_t i = 24; i < perm.size(); ++i) EXPECT_EQ(perm[i], -1);
}

TEST(PermuteIndicesTest, RejectsHostileCounts) {
  std::vector<int32_t> perm(64), sizes(2), offs(2);
  auto run = [&](std::vector<int32_t> counts, int32_t ep, int64_t n) {
    return kernels::Run(
        PermuteIndicesParams{ep, 2, counts.data(), n, perm.data(), sizes.data(), offs.data()});
  };
  EXPECT_TRUE(run({1, 2, 3, 4}, 2, 10).ok());
  EXPECT_FALSE(run({1, -2, 3, 4}, 2, 6).ok());  // negative count (sum still matches)
  EXPECT_FALSE(run({1, 2, 3, 4}, 2, 11).ok());  // counts do not sum to N
  EXPECT_FALSE(run({1, 2}, 0, 3).ok());         // ep_size 0
  EXPECT_FALSE(run({1, 2}, 1, -3).ok());
  EXPECT_FALSE(
      kernels::Run(PermuteIndicesParams{1, 2, nullptr, 0, perm.data(), sizes.data(), offs.data()})
          .ok());
  std::vector<int32_t> counts = {0, 0};
  EXPECT_FALSE(
      kernels::Run(PermuteIndicesParams{1, 2, counts.data(), 0, nullptr, sizes.data(), offs.data()})
          .ok());
  EXPECT_FALSE(kernels::Run(PermuteIndicesParams{1, 0, counts.data(), 0, perm.data(), sizes.data(),
                                                 offs.data()})
                   .ok());
}

TEST(PermuteRowsTest, GatherThenScatterRoundTrips) {
  const std::vector<int32_t> counts = {2, 0, 3, 1, 0, 6};
  const int64_t n = 12, h = 3;
  std::vector<int32_t> perm(PermuteLength(n, 3)), sizes(3), offs(3);
  ASSERT_TRUE(kernels::Run(PermuteIndicesParams{2, 3, counts.data(), n, perm.data(), sizes.data(),
                                                offs.data()})
                  .ok());
  std::vector<float> x(n * h);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 1.0f + i;
  const int64_t len = perm.size(), row = h * sizeof(float);
  std::vector<float> xp(len * h, 5.0f);
  ASSERT_TRUE(kernels::Run(PermuteRowsParams{x.data(), n, row, perm.data(), len, xp.data()}).ok());
  for (int64_t i = 0; i < len; ++i) {
    for (int64_t j = 0; j < h; ++j) {
      EXPECT_EQ(xp[i * h + j], perm[i] < 0 ? 0.0f : x[perm[i] * h + j]) << i;
    }
  }
  std::vector<float> back(n * h, 5.0f);
  ASSERT_TRUE(
      kernels::Run(UnpermuteRowsParams{xp.data(), perm.data(), len, row, n, back.data()}).ok());
  EXPECT_EQ(back, x);
}

TEST(PermuteRowsTest, RejectsBadIndices) {
  std::vector<float> x(4), out(8);
  const std::vector<int32_t> too_big = {0, 4}, too_small = {-2, 0}, repeated = {1, 1};
  for (const auto* perm : {&too_big, &too_small}) {
    EXPECT_FALSE(kernels::Run(PermuteRowsParams{x.data(), 4, 4, perm->data(), 2, out.data()}).ok());
    EXPECT_FALSE(
        kernels::Run(UnpermuteRowsParams{out.data(), perm->data(), 2, 4, 4, x.data()}).ok());
  }
  EXPECT_FALSE(
      kernels::Run(UnpermuteRowsParams{out.data(), repeated.data(), 2, 4, 4, x.data()}).ok());
  EXPECT_FALSE(
      kernels::Run(PermuteRowsParams{x.data(), 4, -4, too_big.data(), 2, out.data()}).ok());
  EXPECT_FALSE(kernels::Run(PermuteRowsParams{nullptr, 4, 4, too_big.data(), 2, out.data()}).ok());
}

}  // namespace
}  // namespace ucp::kernels
