// A deterministic sampler of training windows whose samples do not depend on the data-parallel
// size: sample `row` of step `step` is a pure function of (seed, step, row), so a run resumed at a
// different dp (or with a different micro-batch split) reads the same global batch.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/data/token_data.h"

namespace ucp::runtime {

// OK when a window of seq_len + 1 tokens fits in num_tokens (seq_len >= 1); else InvalidArgument
// naming both sizes.
absl::Status CheckWindow(int64_t num_tokens, int64_t seq_len);

// Start offset of global sample `row` (0-based, row < global_batch) of training step `step`
// (1-based): a window of seq_len + 1 tokens inside [0, num_tokens). Counter-based (splitmix64 of
// seed, step, row), so any rank can compute any row and rank r of dp takes rows
// [r*micro, (r+1)*micro) of the same global batch. Requires CheckWindow(num_tokens, seq_len) OK.
int64_t SampleOffset(uint64_t seed, int64_t step, int64_t row, int64_t num_tokens, int64_t seq_len);

// Fills `out` = tokens[rows, seq_len + 1] (row-major) for rows [first_row, first_row + rows) of
// `step`. InvalidArgument for a window that does not fit, step < 1, negative rows, or an `out`
// of the wrong size; the data's read errors.
absl::Status ReadBatch(const TokenData& data, uint64_t seed, int64_t step, int64_t first_row,
                       int64_t rows, int64_t seq_len, absl::Span<int64_t> out);

// InvalidArgument naming the first token outside [0, vocab) and its position in `tokens`, with
// the data's description (a tokenizer/model mismatch, caught before an embedding lookup faults).
absl::Status CheckVocab(absl::Span<const int64_t> tokens, int64_t vocab, const TokenData& data);

}  // namespace ucp::runtime
