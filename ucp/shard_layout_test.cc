#include "ucp/shard_layout.h"

#include <random>

#include "gtest/gtest.h"

namespace ucp::store {
namespace {

TEST(ShardLayoutTest, WorkedExampleFromSpec) {
  // §3.4: W=2, a (5) then b (6): aligned 12, partition 6.
  const std::vector<int64_t> numels = {5, 6};
  const FlatLayout l = MakeFlatLayout(numels, 2);
  EXPECT_EQ(l.aligned, 12);
  EXPECT_EQ(l.partition_size, 6);
  auto r0 = FlatRankFragments(numels, l, 0);
  ASSERT_EQ(r0.size(), 2u);
  EXPECT_EQ(r0[0].numel, 5);
  EXPECT_EQ(r0[0].partition_offset, 0);
  EXPECT_EQ(r0[1].numel, 1);
  EXPECT_EQ(r0[1].partition_offset, 5);
  auto r1 = FlatRankFragments(numels, l, 1);
  ASSERT_EQ(r1.size(), 1u);
  EXPECT_EQ(r1[0].numel, 5);
  EXPECT_EQ(r1[0].param_offset, 1);
  EXPECT_EQ(FlatRankPadding(l, 0), 0);
  EXPECT_EQ(FlatRankPadding(l, 1), 1);
}

TEST(ShardLayoutTest, FixtureGroupSizes) {
  // The fixtures' no_decay group: 365 elements → dp2: partition 184, rank 1 padding 3; dp4: 92.
  const FlatLayout l = MakeFlatLayout({365}, 2);
  EXPECT_EQ(l.partition_size, 184);
  EXPECT_EQ(FlatRankPadding(l, 1), 3);
  const FlatLayout l4 = MakeFlatLayout({365}, 4);
  EXPECT_EQ(l4.partition_size, 92);
  EXPECT_EQ(FlatRankPadding(l4, 3), 3);
}

TEST(ShardLayoutTest, WholePaddingRank) {
  const FlatLayout l = MakeFlatLayout({1}, 8);  // aligned 16, partition 2: ranks 1.. hold nothing
  EXPECT_EQ(FlatRankPadding(l, 0), 1);
  EXPECT_EQ(FlatRankPadding(l, 5), 2);
  EXPECT_TRUE(FlatRankFragments(std::vector<int64_t>{1}, l, 5).empty());
}

// Property: Split then Merge gives back every parameter; padding is zero; fragments tile.
TEST(ShardLayoutTest, SplitMergeRoundTripRandom) {
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 300; ++iter) {
    const int nparams = 1 + static_cast<int>(rng() % 6);
    const int world = 1 + static_cast<int>(rng() % 9);
    const int align = 1 + static_cast<int>(rng() % 3);
    std::vector<std::vector<float>> params;
    std::vector<int64_t> numels;
    float v = 1.0f;
    for (int i = 0; i < nparams; ++i) {
      const int n = static_cast<int>(rng() % 40);
      params.emplace_back();
      for (int k = 0; k < n; ++k) params.back().push_back(v++);
      numels.push_back(n);
    }
    const auto parts = SplitFlat(params, world, align);
    const FlatLayout l = MakeFlatLayout(numels, world, align);
    ASSERT_EQ(static_cast<int>(parts.size()), world);
    int64_t padding = 0;
    for (int r = 0; r < world; ++r) {
      ASSERT_EQ(static_cast<int64_t>(parts[r].size()), l.partition_size);
      const int64_t pad = FlatRankPadding(l, r);
      padding += pad;
      for (int64_t k = l.partition_size - pad; k < l.partition_size; ++k) EXPECT_EQ(parts[r][k], 0.0f);
    }
    EXPECT_EQ(padding, l.aligned - l.total);
    EXPECT_EQ(MergeFlat(parts, numels, align), params);
    for (const auto& p : params) {
      const auto pp = SplitPerParam(p, world);
      EXPECT_EQ(MergePerParam(pp, static_cast<int64_t>(p.size())), p);
    }
  }
}

}  // namespace
}  // namespace ucp::store
