#include "runtime/data/sampler.h"

#include "absl/strings/str_cat.h"
#include "formats/base/checked_math.h"
#include "formats/base/splitmix64.h"
#include "formats/base/status.h"

namespace ucp::runtime {
namespace {

// The high 64 bits of a · b (no __int128 under -Wpedantic).
uint64_t MulHigh64(uint64_t a, uint64_t b) {
  const uint64_t a_lo = a & 0xffffffffu, a_hi = a >> 32;
  const uint64_t b_lo = b & 0xffffffffu, b_hi = b >> 32;
  const uint64_t lo_lo = a_lo * b_lo;
  const uint64_t hi_lo = a_hi * b_lo;
  const uint64_t lo_hi = a_lo * b_hi;
  const uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xffffffffu) + lo_hi;
  return a_hi * b_hi + (hi_lo >> 32) + (cross >> 32);
}

}  // namespace

absl::Status CheckWindow(int64_t num_tokens, int64_t seq_len) {
  if (seq_len < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence length ", seq_len, " is not positive"));
  }
  // seq_len >= num_tokens, not seq_len + 1 > num_tokens: no overflow at INT64_MAX.
  if (seq_len >= num_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("a window of sequence length ", seq_len,
                                                   " + 1 tokens does not fit in ", num_tokens,
                                                   " tokens"));
  }
  return absl::OkStatus();
}

int64_t SampleOffset(uint64_t seed, int64_t step, int64_t row, int64_t num_tokens,
                     int64_t seq_len) {
  UCP_CHECK(CheckWindow(num_tokens, seq_len).ok()) << num_tokens << " tokens, seq " << seq_len;
  // Chained rather than XORed together, so (step, row) pairs never collide by symmetry.
  uint64_t h = SplitMix64(seed);
  h = SplitMix64(h ^ static_cast<uint64_t>(step));
  h = SplitMix64(h ^ static_cast<uint64_t>(row));
  // Valid starts are [0, num_tokens - seq_len - 1]; Lemire's multiply-shift maps h onto them
  // (bias below 2^-64 · range, and the same on every machine).
  const auto starts = static_cast<uint64_t>(num_tokens - seq_len);
  return static_cast<int64_t>(MulHigh64(h, starts));
}

absl::Status ReadBatch(const TokenData& data, uint64_t seed, int64_t step, int64_t first_row,
                       int64_t rows, int64_t seq_len, absl::Span<int64_t> out) {
  UCP_RETURN_IF_ERROR(WithContext(CheckWindow(data.num_tokens(), seq_len), data.description()));
  if (step < 1) return absl::InvalidArgumentError(absl::StrCat("step ", step, " (1-based)"));
  if (first_row < 0 || rows < 0 || !CheckedAdd(first_row, rows).has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("rows [", first_row, ", +", rows, ")"));
  }
  const int64_t window = seq_len + 1;
  const std::optional<int64_t> total = CheckedMul(rows, window);
  if (!total.has_value() || static_cast<uint64_t>(*total) != out.size()) {
    return absl::InvalidArgumentError(absl::StrCat("batch buffer holds ", out.size(), " tokens, ",
                                                   rows, " rows of ", window, " need ",
                                                   total.value_or(-1)));
  }
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t offset = SampleOffset(seed, step, first_row + i, data.num_tokens(), seq_len);
    UCP_RETURN_IF_ERROR(data.Read(
        offset, out.subspan(static_cast<size_t>(i * window), static_cast<size_t>(window))));
  }
  return absl::OkStatus();
}

absl::Status CheckVocab(absl::Span<const int64_t> tokens, int64_t vocab, const TokenData& data) {
  if (vocab < 1) return absl::InvalidArgumentError(absl::StrCat("vocabulary size ", vocab));
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token ", tokens[i], " at position ", i, " of the batch is outside the vocabulary [0, ",
          vocab, ") (", data.description(), "; wrong dtype or tokenizer?)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace ucp::runtime
