#include "converters/execute/byte_partition.h"

#include <algorithm>
#include <functional>
#include <queue>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ucp::converters::execute {

absl::StatusOr<std::vector<RankShare>> PartitionByBytes(absl::Span<const uint64_t> file_sizes,
                                                        int ranks, uint64_t min_piece) {
  if (ranks < 1) return absl::InvalidArgumentError(absl::StrCat("ranks ", ranks, " < 1"));
  if (min_piece == 0) return absl::InvalidArgumentError("min_piece 0");
  uint64_t total = 0;
  for (uint64_t size : file_sizes) total += size;
  // Pieces small against a rank's share bound LPT's imbalance by one piece.
  const uint64_t piece = std::max(min_piece, total / (uint64_t{32} * static_cast<uint64_t>(ranks)));
  std::vector<ByteRange> pieces;
  for (size_t f = 0; f < file_sizes.size(); ++f) {
    for (uint64_t at = 0; at < file_sizes[f]; at += piece) {
      pieces.push_back({static_cast<int>(f), at, std::min(file_sizes[f], at + piece)});
    }
  }
  std::stable_sort(pieces.begin(), pieces.end(),
                   [](const ByteRange& a, const ByteRange& b) { return a.size() > b.size(); });
  // Least loaded rank first; ties to the lower rank.
  using Load = std::pair<uint64_t, int>;
  std::priority_queue<Load, std::vector<Load>, std::greater<Load>> loads;
  for (int r = 0; r < ranks; ++r) loads.push({0, r});
  std::vector<RankShare> shares(ranks);
  for (const ByteRange& p : pieces) {
    auto [load, rank] = loads.top();
    loads.pop();
    shares[rank].ranges.push_back(p);
    shares[rank].bytes += p.size();
    loads.push({load + p.size(), rank});
  }
  for (RankShare& share : shares) {
    std::sort(share.ranges.begin(), share.ranges.end(), [](const ByteRange& a, const ByteRange& b) {
      return std::tie(a.file, a.begin) < std::tie(b.file, b.begin);
    });
  }
  return shares;
}

}  // namespace ucp::converters::execute
