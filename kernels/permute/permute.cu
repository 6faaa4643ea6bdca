// CUDA permute (permute.h). generate_permute_indices runs in one block: thread 0 does the two
// short prefix sums (ep*E_l and E_l entries) into shared memory, then every thread fills. Writes
// are bounded by the permutation's length, so hostile counts cannot write out of bounds. Row
// gather and scatter copy rows as 8/4/2/1-byte words, whichever the sizes and pointers allow.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/permute/permute.h"

namespace ucp::kernels {
namespace {

constexpr int kThreads = 256;

absl::Status LaunchStatus(const char* what) {
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) {
    return absl::InternalError(absl::StrCat("permute: ", what, ": ", cudaGetErrorString(e)));
  }
  return absl::OkStatus();
}

__global__ void PermuteIndicesKernel(PermuteIndicesParams p, int64_t len) {
  extern __shared__ int32_t smem[];
  const int32_t el = p.num_local_experts, n_counts = p.ep_size * el;
  int32_t* start = smem;           // [n_counts] first received row of (s, e)
  int32_t* dst = smem + n_counts;  // [n_counts] first permutation slot of (s, e)
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) p.perm[i] = -1;
  if (threadIdx.x == 0) {
    int64_t sum = 0;
    for (int32_t i = 0; i < n_counts; ++i) {
      start[i] = static_cast<int32_t>(min(sum, len));
      sum += max(p.counts[i], 0);
    }
    int64_t write = 0;
    for (int32_t e = 0; e < el; ++e) {
      int64_t total = 0;
      for (int32_t s = 0; s < p.ep_size; ++s) {
        dst[s * el + e] = static_cast<int32_t>(min(write + total, len));
        total += max(p.counts[s * el + e], 0);
      }
      const int64_t m =
          (max(total, int64_t{kPermuteAlign}) + kPermuteAlign - 1) / kPermuteAlign * kPermuteAlign;
      write += m;
      p.m_sizes[e] = static_cast<int32_t>(m);
      p.m_offsets[e] = static_cast<int32_t>(write);
    }
  }
  __syncthreads();
  for (int32_t i = 0; i < n_counts; ++i) {
    const int64_t c = max(p.counts[i], 0);
    for (int64_t r = threadIdx.x; r < c && dst[i] + r < len; r += blockDim.x) {
      p.perm[dst[i] + r] = static_cast<int32_t>(start[i] + r);
    }
  }
}

template <typename W>
__global__ void GatherRows(const W* x, int64_t num_rows, int64_t words, const int32_t* perm,
                           int64_t perm_len, W* out) {
  const int64_t total = perm_len * words;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = perm[idx / words];
    out[idx] = r >= 0 && r < num_rows ? x[r * words + idx % words] : W{0};
  }
}

template <typename W>
__global__ void ScatterRows(const W* y, const int32_t* perm, int64_t perm_len, int64_t words,
                            int64_t num_rows, W* out) {
  const int64_t total = perm_len * words;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = perm[idx / words];
    if (r >= 0 && r < num_rows) out[r * words + idx % words] = y[idx];
  }
}

// Largest word in {8, 4, 2, 1} that divides the row size and both pointers' addresses.
int WordBytes(int64_t row_bytes, const void* a, const void* b) {
  const auto bits = static_cast<uint64_t>(row_bytes) | reinterpret_cast<uintptr_t>(a) |
                    reinterpret_cast<uintptr_t>(b);
  for (int w : {8, 4, 2}) {
    if (bits % w == 0) return w;
  }
  return 1;
}

unsigned Blocks(int64_t total) {
  return static_cast<unsigned>(
      std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, 65535)));
}

}  // namespace

absl::Status RunCuda(const PermuteIndicesParams& p, void* stream) {
  if (absl::Status s = CanImplement(p); !s.ok()) return s;
  const int64_t n_counts = int64_t{p.ep_size} * p.num_local_experts;
  if (n_counts > kPermuteCudaMaxCounts) {
    return absl::InvalidArgumentError(absl::StrCat(
        "permute: ep_size * num_local_experts = ", n_counts, " > ", kPermuteCudaMaxCounts));
  }
  const size_t smem = 2 * n_counts * sizeof(int32_t);
  PermuteIndicesKernel<<<1, 1024, smem, static_cast<cudaStream_t>(stream)>>>(
      p, PermuteLength(p.num_rows, p.num_local_experts));
  return LaunchStatus("indices");
}

absl::Status RunCuda(const PermuteRowsParams& p, void* stream) {
  if (absl::Status s = CanImplement(p); !s.ok()) return s;
  if (p.perm_len == 0 || p.row_bytes == 0) return absl::OkStatus();
  const int w = WordBytes(p.row_bytes, p.x, p.out);
  const int64_t words = p.row_bytes / w;
  auto s = static_cast<cudaStream_t>(stream);
  const unsigned blocks = Blocks(p.perm_len * words);
  switch (w) {
    case 8:
      GatherRows<<<blocks, kThreads, 0, s>>>(static_cast<const uint64_t*>(p.x), p.num_rows, words,
                                             p.perm, p.perm_len, static_cast<uint64_t*>(p.out));
      break;
    case 4:
      GatherRows<<<blocks, kThreads, 0, s>>>(static_cast<const uint32_t*>(p.x), p.num_rows, words,
                                             p.perm, p.perm_len, static_cast<uint32_t*>(p.out));
      break;
    case 2:
      GatherRows<<<blocks, kThreads, 0, s>>>(static_cast<const uint16_t*>(p.x), p.num_rows, words,
                                             p.perm, p.perm_len, static_cast<uint16_t*>(p.out));
      break;
    default:
      GatherRows<<<blocks, kThreads, 0, s>>>(static_cast<const uint8_t*>(p.x), p.num_rows, words,
                                             p.perm, p.perm_len, static_cast<uint8_t*>(p.out));
      break;
  }
  return LaunchStatus("gather rows");
}

absl::Status RunCuda(const UnpermuteRowsParams& p, void* stream) {
  if (absl::Status s = CanImplement(p); !s.ok()) return s;
  auto s = static_cast<cudaStream_t>(stream);
  if (p.num_rows > 0 && p.row_bytes > 0) {
    if (cudaError_t e = cudaMemsetAsync(p.out, 0, p.num_rows * p.row_bytes, s); e != cudaSuccess) {
      return absl::InternalError(absl::StrCat("permute: memset: ", cudaGetErrorString(e)));
    }
  }
  if (p.perm_len == 0 || p.row_bytes == 0) return absl::OkStatus();
  const int w = WordBytes(p.row_bytes, p.y, p.out);
  const int64_t words = p.row_bytes / w;
  const unsigned blocks = Blocks(p.perm_len * words);
  switch (w) {
    case 8:
      ScatterRows<<<blocks, kThreads, 0, s>>>(static_cast<const uint64_t*>(p.y), p.perm, p.perm_len,
                                              words, p.num_rows, static_cast<uint64_t*>(p.out));
      break;
    case 4:
      ScatterRows<<<blocks, kThreads, 0, s>>>(static_cast<const uint32_t*>(p.y), p.perm, p.perm_len,
                                              words, p.num_rows, static_cast<uint32_t*>(p.out));
      break;
    case 2:
      ScatterRows<<<blocks, kThreads, 0, s>>>(static_cast<const uint16_t*>(p.y), p.perm, p.perm_len,
                                              words, p.num_rows, static_cast<uint16_t*>(p.out));
      break;
    default:
      ScatterRows<<<blocks, kThreads, 0, s>>>(static_cast<const uint8_t*>(p.y), p.perm, p.perm_len,
                                              words, p.num_rows, static_cast<uint8_t*>(p.out));
      break;
  }
  return LaunchStatus("scatter rows");
}

}  // namespace ucp::kernels
