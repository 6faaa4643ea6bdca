// ShardLayout on the spec's worked examples and, as a property over random groups, topologies and
// alignments: pieces tile every parameter exactly once, padding is where the layout says, and
// Merge(Split(x)) == x. That Split reproduces what DeepSpeed stored is checked on every real
// fixture by converters/deepspeed/shard_layout_fixture_test.cc.
#include "ucp/shard_layout.h"

#include <random>

#include "gtest/gtest.h"

namespace ucp {
namespace {

Topology Dp(int dp, int ep = 1, bool data_first = false) {
  Topology t;
  t.dp = dp;
  t.ep = ep;
  t.use_data_before_expert_parallelism = data_first;
  return t;
}

TEST(ShardLayoutTest, FlatWorkedExampleFromSpec) {
  // §3.4: W = 2, a (5) then b (6): aligned 12, partition 6.
  const ShardLayout l({PartitionKind::kFlat, {5, 6}}, Dp(2));
  EXPECT_EQ(l.partition_size(), 6);
  EXPECT_EQ(l.flat_length(), 12);
  const RankShard r0 = l.Shard(0);
  EXPECT_EQ(r0.pieces, (std::vector<ShardPiece>{{0, 0, 0, 0, 5}, {1, 0, 0, 5, 1}}));
  EXPECT_EQ(r0.padding, 0);
  const RankShard r1 = l.Shard(1);
  EXPECT_EQ(r1.pieces, (std::vector<ShardPiece>{{1, 1, 1, 0, 5}}));
  EXPECT_EQ(r1.padding, 1);
  EXPECT_EQ(r1.total_padding, 1);
  EXPECT_EQ(r1.SavedPadding(/*bf16_optimizer=*/true), 1);
  EXPECT_EQ(r0.SavedPadding(/*bf16_optimizer=*/true), 0);
}

TEST(ShardLayoutTest, PerParamWorkedExampleFromSpec) {
  // §4.2: W = 2, a (5), b (6): P_a = P_b = 3; rank 1 = a[3:5] ‖ pad ‖ b[3:6].
  const ShardLayout l({PartitionKind::kPerParam, {5, 6}}, Dp(2));
  EXPECT_EQ(l.partition_size(), 6);
  EXPECT_EQ(l.Shard(1).pieces, (std::vector<ShardPiece>{{0, 3, 3, 0, 2}, {1, 3, 3, 3, 3}}));
  EXPECT_EQ(l.Shard(1).padding, 1);
  // §4.1: several trailing ranks can be pure padding.
  EXPECT_EQ(PerParamShard(2, 4, 3).valid, 0);
  EXPECT_EQ(PerParamShard(2, 4, 3).partition, 1);
  EXPECT_EQ(PerParamShard(2, 4, 3).offset, 2);
}

TEST(ShardLayoutTest, FixtureGroupSizes) {
  // The fixtures' no_decay group: 365 elements -> dp 2: partition 184, rank 1 padding 3; dp 4: 92.
  EXPECT_EQ(ShardLayout({PartitionKind::kFlat, {365}}, Dp(2)).Shard(1).padding, 3);
  const ShardLayout l4({PartitionKind::kFlat, {365}}, Dp(4));
  EXPECT_EQ(l4.partition_size(), 92);
  EXPECT_EQ(l4.Shard(3).padding, 3);
  // W large against the group: ranks past the data hold padding only (§3.2).
  const ShardLayout tiny({PartitionKind::kFlat, {1}}, Dp(8));
  EXPECT_EQ(tiny.Shard(5).padding, 2);
  EXPECT_TRUE(tiny.Shard(5).pieces.empty());
}

// AutoEP (§7.1): at dp 4, ep 2 the expert group is cut over edp 2, EP rank e's rows at e·numel.
TEST(ShardLayoutTest, ExpertGroupsFollowTheTopology) {
  const ShardLayout l({PartitionKind::kFlat, {6}, /*expert=*/true}, Dp(4, 2));
  EXPECT_EQ(l.world(), 2);
  const RankShard r3 = l.Shard(3);  // default order: EP rank 1, expert-DP rank 1
  EXPECT_EQ(r3.ep_rank, 1);
  EXPECT_EQ(r3.partition_rank, 1);
  EXPECT_EQ(r3.pieces, (std::vector<ShardPiece>{{0, 4, 10, 0, 2}}));
  const RankShard d1 = ShardLayout({PartitionKind::kFlat, {6}, true}, Dp(4, 2, true)).Shard(1);
  EXPECT_EQ(d1.ep_rank, 0);
  EXPECT_EQ(d1.partition_rank, 1);
}

// The property: random groups (including empty parameters), both kinds, dp / ep / expert order and
// alignment: pieces tile the merged tensors exactly once and Merge∘Split is the identity.
TEST(ShardLayoutTest, MergeOfSplitIsIdentityOverRandomLayouts) {
  std::mt19937 rng(20261201);
  for (int iter = 0; iter < 2000; ++iter) {
    const int ep = 1 + static_cast<int>(rng() % 4);
    const int dp = ep * (1 + static_cast<int>(rng() % 6));
    GroupSpec spec;
    spec.kind = rng() % 2 ? PartitionKind::kFlat : PartitionKind::kPerParam;
    spec.expert = ep > 1 || rng() % 2;
    spec.alignment_factor = 1 + static_cast<int>(rng() % 4);
    const int nparams = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < nparams; ++i) spec.numels.push_back(rng() % 5 == 0 ? 0 : 1 + rng() % 40);
    const Topology t = Dp(dp, spec.expert ? ep : 1, rng() % 2);
    ASSERT_TRUE(t.Validate().ok());
    const ShardLayout layout(spec, t);
    const size_t elem = 1 + rng() % 4;
    const int64_t rows = spec.expert ? t.ep : 1;
    std::vector<ShardLayout::Bytes> merged;
    for (int64_t n : spec.numels) {
      ShardLayout::Bytes b(rows * n * elem);
      for (auto& x : b) x = static_cast<uint8_t>(1 + rng() % 255);  // never 0: padding is visible
      merged.push_back(std::move(b));
    }
    // Pieces cover each merged element exactly once; padding = partition − pieces.
    std::vector<std::vector<int>> covered;
    for (int64_t n : spec.numels) covered.emplace_back(rows * n, 0);
    for (int d = 0; d < dp; ++d) {
      const RankShard s = layout.Shard(d);
      int64_t held = 0;
      for (const ShardPiece& p : s.pieces) {
        ASSERT_LE(p.partition_offset + p.numel, s.size);
        for (int64_t k = 0; k < p.numel; ++k) ++covered[p.param][p.merged_offset + k];
        held += p.numel;
      }
      EXPECT_EQ(s.padding, s.size - held);
    }
    for (const auto& c : covered) {
      for (int x : c) ASSERT_EQ(x, 1) << "iter " << iter;
    }
    const std::vector<ShardLayout::Bytes> parts = layout.Split(merged, elem);
    ASSERT_EQ(static_cast<int>(parts.size()), dp);
    int64_t zeros = 0;
    for (const auto& p : parts) {
      ASSERT_EQ(static_cast<int64_t>(p.size()),
                layout.partition_size() * static_cast<int64_t>(elem));
      for (uint8_t x : p) zeros += x == 0;
    }
    int64_t padding = 0;
    for (int d = 0; d < dp; ++d) padding += layout.Shard(d).padding;
    EXPECT_EQ(zeros, padding * static_cast<int64_t>(elem)) << "iter " << iter;
    EXPECT_EQ(layout.Merge(parts, elem), merged) << "iter " << iter;
  }
}

}  // namespace
}  // namespace ucp
