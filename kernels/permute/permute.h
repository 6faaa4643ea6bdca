// Token permutation around the grouped experts (deepspeed-runtime.md §1.4 steps 7 and 9; TorchTitan
// experiments/kernels/moe/indices.py generate_permute_indices with fill_indices_cpu, which AutoEP
// calls with ALIGN = 8).
//
// Input: the rows this rank received, ordered by source s (EP rank) then by local expert e, and
// the counts c[s*E_l + e] (for ep = 1 just the [E_l] histogram). Per expert
//   total_e = sum_s c[s, e],  m_e = ceil(max(total_e, 8) / 8) * 8   (an expert with 0 rows gets 8)
//   offs_e  = m_0 + ... + m_e                                       (torch._grouped_mm's offs)
// and a permutation of length round_up(N + E_l*8, 8) filled with -1, then for each e, for each s
// in order, the row indices start[s,e] .. start[s,e]+c[s,e]-1 written consecutively from
// offs_e - m_e (start = exclusive prefix sum of the flattened c). Entries left at -1 are padding:
// PermuteRows turns them into zero rows, UnpermuteRows drops them.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace ucp::kernels {

inline constexpr int32_t kPermuteAlign = 8;

// round_up(num_rows + num_local_experts * 8, 8): the permutation's length (TorchTitan's max_len).
inline int64_t PermuteLength(int64_t num_rows, int32_t num_local_experts) {
  const int64_t len = num_rows + int64_t{num_local_experts} * kPermuteAlign;
  return (len + kPermuteAlign - 1) / kPermuteAlign * kPermuteAlign;
}

struct PermuteIndicesParams {
  int32_t ep_size = 1;              // sources (rows of c)
  int32_t num_local_experts = 0;    // E_l
  const int32_t* counts = nullptr;  // [ep_size * E_l]
  int64_t num_rows = 0;             // N, must equal sum(counts)
  int32_t* perm = nullptr;          // out [PermuteLength(N, E_l)]
  int32_t* m_sizes = nullptr;       // out [E_l] m_e
  int32_t* m_offsets = nullptr;     // out [E_l] offs_e (cumulative ends)
};

// Sizes and pointers (never reads counts). InvalidArgument.
absl::Status CanImplement(const PermuteIndicesParams& p);
// CPU reference; also checks counts >= 0 and sum(counts) == num_rows (InvalidArgument), before
// writing anything.
absl::Status Run(const PermuteIndicesParams& p);
// CUDA: one block computes sizes, offsets and the fill on the device (no host sync). The counts are
// not checked there: negative counts or a wrong sum give garbage, never an out-of-bounds write.
// Needs ep_size * E_l <= kPermuteCudaMaxCounts (shared memory).
inline constexpr int32_t kPermuteCudaMaxCounts = 4096;
absl::Status RunCuda(const PermuteIndicesParams& p, void* stream);

// x_perm[i] = x[perm[i]] for perm[i] >= 0, a zero row for -1 (the zero row torch concatenates).
// Rows are opaque bytes, so any dtype works.
struct PermuteRowsParams {
  const void* x = nullptr;  // [num_rows, row_bytes]
  int64_t num_rows = 0;
  int64_t row_bytes = 0;
  const int32_t* perm = nullptr;  // [perm_len], entries in [-1, num_rows)
  int64_t perm_len = 0;
  void* out = nullptr;  // [perm_len, row_bytes]
};
absl::Status CanImplement(const PermuteRowsParams& p);
// Also checks every perm entry is in [-1, num_rows) (InvalidArgument) before writing.
absl::Status Run(const PermuteRowsParams& p);
absl::Status RunCuda(const PermuteRowsParams& p, void* stream);  // out-of-range entries: zero row

// The inverse (step 9): out = zeros [num_rows]; out[perm[i]] = y[i] for perm[i] >= 0. Rows of
// padding (-1) are dropped. perm must not repeat an index (generate_permute_indices' never does);
// the reference rejects repeats, the CUDA kernel leaves them racing as torch's index_put does.
struct UnpermuteRowsParams {
  const void* y = nullptr;  // [perm_len, row_bytes]
  const int32_t* perm = nullptr;
  int64_t perm_len = 0;
  int64_t row_bytes = 0;
  int64_t num_rows = 0;
  void* out = nullptr;  // [num_rows, row_bytes]
};
absl::Status CanImplement(const UnpermuteRowsParams& p);
absl::Status Run(const UnpermuteRowsParams& p);
absl::Status RunCuda(const UnpermuteRowsParams& p, void* stream);  // out-of-range entries dropped

}  // namespace ucp::kernels
