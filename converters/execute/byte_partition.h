// PartitionByBytes: the output bytes of a plan shared among the ranks of a distributed conversion
// (issue "Conversion beyond one machine"): every rank computes the same partition from the same
// plan, so no message is needed to agree on it. Output files are pre-sized and written at offsets,
// so a large file is cut into byte ranges that different ranks write; then the pieces are packed
// longest-processing-time first (largest piece to the least loaded rank). With pieces of at most
// `total / (32 · ranks)` bytes (but not below `min_piece`) the most loaded rank carries at most
// about 3 % more than the mean.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace ucp::converters::execute {

// Bytes [begin, end) of output file `file`.
struct ByteRange {
  int file = 0;
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t size() const { return end - begin; }
};

struct RankShare {
  std::vector<ByteRange> ranges;  // by file, then offset
  uint64_t bytes = 0;
};

// Deterministic for the same inputs (ties go to the lower rank and the lower file). Every byte of
// every file is in exactly one range of one rank; empty files go to no rank. InvalidArgument for
// ranks < 1 or min_piece 0.
absl::StatusOr<std::vector<RankShare>> PartitionByBytes(absl::Span<const uint64_t> file_sizes,
                                                        int ranks,
                                                        uint64_t min_piece = uint64_t{1} << 20);

}  // namespace ucp::converters::execute
