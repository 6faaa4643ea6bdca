#include "ucp/tp_layout.h"

#include <cstdint>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp {
namespace {

using ::testing::ElementsAre;

TEST(TpLayoutTest, ChunkWidthsFollowTorchChunk) {
  EXPECT_THAT(ChunkWidths(5, 2), ElementsAre(3, 2));
  EXPECT_THAT(ChunkWidths(8, 2), ElementsAre(4, 4));
  EXPECT_THAT(ChunkWidths(5, 4), ElementsAre(2, 2, 1, 0));
  EXPECT_THAT(ChunkWidths(1, 2), ElementsAre(1, 0));
}

TEST(TpLayoutTest, ColumnParallelIsOneRunPerRank) {
  auto l = Merge({Shape({3, 4}), Shape({2, 4})}, TpCut{});
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->merged, Shape({5, 4}));
  EXPECT_THAT(l->runs, ElementsAre(TpRun{0, 0, 0, 12}, TpRun{1, 0, 12, 8}));
}

TEST(TpLayoutTest, RowParallelInterleavesRows) {
  TpCut cut;
  cut.dim = 1;
  auto l = Merge({Shape({2, 3}), Shape({2, 3})}, cut);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->merged, Shape({2, 6}));
  EXPECT_THAT(l->runs, ElementsAre(TpRun{0, 0, 0, 3}, TpRun{1, 0, 3, 3}, TpRun{0, 3, 6, 3},
                                   TpRun{1, 3, 9, 3}));
}

TEST(TpLayoutTest, TwoSubParamsTakeFirstHalvesThenSecond) {
  const std::vector<Shape> ranks = {Shape({4, 2}), Shape({4, 2})};
  auto widths = TwoSubParamWidths(ranks);
  ASSERT_TRUE(widths.ok());
  TpCut cut;
  cut.widths = *widths;
  auto l = Merge(ranks, cut);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->merged, Shape({8, 2}));
  EXPECT_THAT(l->runs, ElementsAre(TpRun{0, 0, 0, 4}, TpRun{1, 0, 4, 4}, TpRun{0, 4, 8, 4},
                                   TpRun{1, 4, 12, 4}));
  EXPECT_FALSE(TwoSubParamWidths({Shape({1, 2})}).ok());
}

TEST(TpLayoutTest, UnevenSubParamWidths) {
  TpCut cut;
  cut.widths = {{3, 3}, {2, 1}, {2, 1}};  // Q 6, K 3, V 3 rows
  auto l = Merge({Shape({7, 2}), Shape({5, 2})}, cut);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->merged, Shape({12, 2}));
  EXPECT_THAT(l->runs, ElementsAre(TpRun{0, 0, 0, 6}, TpRun{1, 0, 6, 6}, TpRun{0, 6, 12, 4},
                                   TpRun{1, 6, 16, 2}, TpRun{0, 10, 18, 4}, TpRun{1, 8, 22, 2}));
}

TEST(TpLayoutTest, VocabularyViewKeepsTheStorage) {
  TpCut cut;
  cut.view_rows = 61;
  auto l = Merge({Shape({32, 8}), Shape({32, 8})}, cut);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->merged, Shape({64, 8}));
  EXPECT_EQ(l->view, Shape({61, 8}));
  cut.view_rows = 100;
  EXPECT_EQ(Merge({Shape({32, 8}), Shape({32, 8})}, cut)->view, Shape({64, 8}));
}

TEST(TpLayoutTest, ReplicatedAndAverageUseRankZero) {
  for (TpMergeKind kind : {TpMergeKind::kReplicated, TpMergeKind::kAverage}) {
    TpCut cut;
    cut.kind = kind;
    auto l = Merge({Shape({8}), Shape({8})}, cut);
    ASSERT_TRUE(l.ok());
    EXPECT_EQ(l->merged, Shape({8}));
    EXPECT_THAT(l->runs, ElementsAre(TpRun{0, 0, 0, 8}));
    EXPECT_FALSE(Merge({Shape({8}), Shape({4})}, cut).ok());
  }
}

TEST(TpLayoutTest, RejectsMismatchedSlices) {
  EXPECT_FALSE(Merge({}, TpCut{}).ok());
  EXPECT_FALSE(Merge({Shape({2, 3}), Shape({2, 4})}, TpCut{}).ok());  // differ outside dim 0
  EXPECT_FALSE(Merge({Shape({2, 3}), Shape({2})}, TpCut{}).ok());
  TpCut cut;
  cut.dim = 2;
  EXPECT_FALSE(Merge({Shape({2, 3})}, cut).ok());
  cut.dim = 0;
  cut.widths = {{1, 1}};
  EXPECT_FALSE(Merge({Shape({2, 3}), Shape({2, 3})}, cut).ok());  // widths do not sum to the slices
  cut.widths = {{1}};
  EXPECT_FALSE(Merge({Shape({1, 3}), Shape({1, 3})}, cut).ok());  // one width for two ranks
  cut.widths = {{-1, 3}, {3, 0}};
  EXPECT_FALSE(Merge({Shape({2, 3}), Shape({3, 3})}, cut).ok());
  EXPECT_FALSE(Split(Shape({4}), TpCut{}, 0).ok());
}

// Where merged element `i` comes from, by coordinates (independent of the run arithmetic).
std::pair<int, int64_t> Source(const Shape& merged, const TpCut& cut,
                               const std::vector<Shape>& ranks, int64_t i) {
  std::vector<int64_t> idx(merged.rank());
  for (int d = merged.rank() - 1; d >= 0; --d) {
    idx[d] = i % merged.dim(d);
    i /= merged.dim(d);
  }
  int64_t pos = idx[cut.dim];
  int rank = 0;
  int64_t rank_pos = 0;
  for (size_t k = 0; k < cut.widths.size(); ++k) {
    bool found = false;
    for (size_t r = 0; r < cut.widths[k].size(); ++r) {
      if (pos < cut.widths[k][r]) {
        rank = static_cast<int>(r);
        rank_pos = pos;
        for (size_t k2 = 0; k2 < k; ++k2) rank_pos += cut.widths[k2][r];
        found = true;
        break;
      }
      pos -= cut.widths[k][r];
    }
    if (found) break;
  }
  idx[cut.dim] = rank_pos;
  int64_t off = 0;
  for (int d = 0; d < merged.rank(); ++d) off = off * ranks[rank].dim(d) + idx[d];
  return {rank, off};
}

TEST(TpLayoutTest, SplitAndMergeAreExactInversesOnRandomLayouts) {
  std::mt19937 rng(20261123);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int iter = 0; iter < 2000; ++iter) {
    const int rank = uniform(1, 4);
    const int tp = uniform(1, 5);
    TpCut cut;
    cut.dim = uniform(0, rank - 1);
    const int subs = uniform(0, 3);  // 0: torch.chunk of the full size
    for (int k = 0; k < subs; ++k) {
      std::vector<int64_t> w;
      for (int r = 0; r < tp; ++r) w.push_back(uniform(0, 3));
      cut.widths.push_back(w);
    }
    std::vector<int64_t> dims;
    for (int d = 0; d < rank; ++d) dims.push_back(uniform(1, 5));
    if (subs > 0) {
      int64_t total = 0;
      for (const auto& w : cut.widths) {
        for (int64_t x : w) total += x;
      }
      dims[cut.dim] = total;
    }
    if (uniform(0, 3) == 0) cut.view_rows = uniform(0, 6);
    const Shape full(dims);
    auto split = Split(full, cut, tp);
    ASSERT_TRUE(split.ok()) << split.status() << " " << full.ToString();
    ASSERT_EQ(split->merged, full);
    const int64_t numel = *full.NumElements();
    std::vector<uint8_t> merged(numel * 2);
    for (auto& b : merged) b = static_cast<uint8_t>(rng());
    const auto pieces = SplitBytes(*split, merged, 2);
    auto merge = Merge(split->ranks, split->cut);
    ASSERT_TRUE(merge.ok()) << merge.status();
    EXPECT_EQ(merge->runs, split->runs);
    EXPECT_EQ(merge->view, split->view);
    ASSERT_EQ(MergeBytes(*merge, pieces, 2), merged);
    int64_t covered = 0;
    for (const TpRun& run : merge->runs) covered += run.numel;
    EXPECT_EQ(covered, numel);
    for (int64_t i = 0; i < numel; ++i) {
      auto [r, off] = Source(full, split->cut, split->ranks, i);
      ASSERT_EQ(pieces[r][off * 2], merged[i * 2]) << "element " << i << " of " << full.ToString();
      ASSERT_EQ(pieces[r][off * 2 + 1], merged[i * 2 + 1]);
    }
  }
}

}  // namespace
}  // namespace ucp
