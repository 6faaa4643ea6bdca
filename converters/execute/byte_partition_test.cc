#include "converters/execute/byte_partition.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace ucp::converters::execute {
namespace {

// 10,000 parameter-file sizes with a heavy (Pareto, alpha 1.1) tail: most a few KiB, a few
// hundreds of MiB, as the per-parameter files of a UCP (embeddings and experts dwarf norms).
std::vector<uint64_t> HeavyTailedSizes(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<uint64_t> sizes;
  for (int i = 0; i < 10000; ++i) {
    const double x = 4096.0 * std::pow(1.0 - u(rng), -1.0 / 1.1);
    sizes.push_back(static_cast<uint64_t>(std::min(x, 2e9)));
  }
  return sizes;
}

// Every byte of every file in exactly one range.
void ExpectExactCover(const std::vector<uint64_t>& sizes, const std::vector<RankShare>& shares) {
  std::map<int, std::vector<ByteRange>> by_file;
  for (const RankShare& s : shares) {
    uint64_t bytes = 0;
    for (const ByteRange& r : s.ranges) {
      by_file[r.file].push_back(r);
      bytes += r.size();
    }
    EXPECT_EQ(bytes, s.bytes);
  }
  for (size_t f = 0; f < sizes.size(); ++f) {
    std::vector<ByteRange>& ranges = by_file[static_cast<int>(f)];
    std::sort(ranges.begin(), ranges.end(),
              [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
    uint64_t at = 0;
    for (const ByteRange& r : ranges) {
      ASSERT_EQ(r.begin, at) << "file " << f;
      ASSERT_GT(r.end, r.begin) << "file " << f;
      at = r.end;
    }
    ASSERT_EQ(at, sizes[f]) << "file " << f;
  }
}

TEST(PartitionByBytes, HeavyTailedPlanIsBalancedWithinFivePercent) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    const std::vector<uint64_t> sizes = HeavyTailedSizes(seed);
    for (int ranks : {1, 2, 3, 4, 7, 8, 16, 64}) {
      absl::StatusOr<std::vector<RankShare>> shares = PartitionByBytes(sizes, ranks, 4096);
      ASSERT_TRUE(shares.ok()) << shares.status();
      ASSERT_EQ(shares->size(), static_cast<size_t>(ranks));
      ExpectExactCover(sizes, *shares);
      uint64_t total = 0, most = 0, least = UINT64_MAX;
      for (const RankShare& s : *shares) {
        total += s.bytes;
        most = std::max(most, s.bytes);
        least = std::min(least, s.bytes);
      }
      const double mean = static_cast<double>(total) / ranks;
      EXPECT_LE(most, mean * 1.05) << "seed " << seed << ", " << ranks << " ranks";
      EXPECT_GE(least, mean * 0.95) << "seed " << seed << ", " << ranks << " ranks";
    }
  }
}

TEST(PartitionByBytes, SameInputSamePartition) {
  const std::vector<uint64_t> sizes = HeavyTailedSizes(7);
  absl::StatusOr<std::vector<RankShare>> a = PartitionByBytes(sizes, 5, 4096);
  absl::StatusOr<std::vector<RankShare>> b = PartitionByBytes(sizes, 5, 4096);
  ASSERT_TRUE(a.ok() && b.ok());
  for (int r = 0; r < 5; ++r) {
    ASSERT_EQ((*a)[r].ranges.size(), (*b)[r].ranges.size());
    for (size_t i = 0; i < (*a)[r].ranges.size(); ++i) {
      EXPECT_EQ((*a)[r].ranges[i].file, (*b)[r].ranges[i].file);
      EXPECT_EQ((*a)[r].ranges[i].begin, (*b)[r].ranges[i].begin);
      EXPECT_EQ((*a)[r].ranges[i].end, (*b)[r].ranges[i].end);
    }
  }
}

TEST(PartitionByBytes, OneHugeFileIsCutAcrossRanks) {
  const std::vector<uint64_t> sizes = {uint64_t{1} << 30, 10, 0};
  absl::StatusOr<std::vector<RankShare>> shares = PartitionByBytes(sizes, 4, 1 << 20);
  ASSERT_TRUE(shares.ok());
  ExpectExactCover(sizes, *shares);
  for (const RankShare& s : *shares) EXPECT_NEAR(s.bytes, (1 << 30) / 4, (1 << 30) / 100);
}

TEST(PartitionByBytes, RefusesNonsense) {
  EXPECT_FALSE(PartitionByBytes({1, 2}, 0).ok());
  EXPECT_FALSE(PartitionByBytes({1, 2}, 2, 0).ok());
  absl::StatusOr<std::vector<RankShare>> none = PartitionByBytes({}, 3);
  ASSERT_TRUE(none.ok());
  for (const RankShare& s : *none) EXPECT_TRUE(s.ranges.empty());
}

}  // namespace
}  // namespace ucp::converters::execute
