// CUDA grouped GEMM (grouped_gemm.h): the simplest correct version, a 16x16 shared-memory tiled
// kernel (llm.c dev/cuda style "version 1"), for all groups in one launch. Grid: x = column
// tiles, y = row tiles over the largest possible group (m rows, or n for the weight gradient;
// tiles past a group's end exit at once), z = group. offs are read on the device, so no host
// sync. Hostile offs (decreasing, past m) make that group's blocks write nothing.
#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/grouped_gemm/grouped_gemm.h"

namespace ucp::kernels {
namespace {

constexpr int kTile = 16;
constexpr int64_t kMaxGridY = 65535;

__device__ __forceinline__ float Ld(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float Ld(const uint16_t* p, int64_t i) { return Bf16ToFloat(p[i]); }
__device__ __forceinline__ void St(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void St(uint16_t* p, int64_t i, float v) { p[i] = FloatToBf16(v); }

template <typename T>
__global__ void GroupedGemmKernel(GroupedGemmParams p, int64_t row_tiles) {
  const int32_t g = blockIdx.z;
  const int64_t r0 = g == 0 ? 0 : p.offs[g - 1], r1 = p.offs[g];
  if (r0 < 0 || r1 < r0 || r1 > p.m) return;  // uniform per block
  const GemmView v = MakeGemmView(p.form, p.n, p.k, g, r0, r1);
  const bool fwd = p.form == GroupedGemmForm::kForward;
  const bool wgrad = p.form == GroupedGemmForm::kBackwardWeight;
  const T* a = static_cast<const T*>(fwd ? p.x : p.dy) + v.a_off;
  const T* b = static_cast<const T*>(wgrad ? p.x : p.w) + v.b_off;
  T* c = static_cast<T*>(p.out) + v.c_off;
  __shared__ float as[kTile][kTile + 1], bs[kTile][kTile + 1];
  const int ty = threadIdx.y, tx = threadIdx.x;
  const int64_t j = int64_t{blockIdx.x} * kTile + tx;
  if (int64_t{blockIdx.x} * kTile >= v.cols) return;
  for (int64_t tile = blockIdx.y; tile < row_tiles && tile * kTile < v.rows; tile += gridDim.y) {
    const int64_t i = tile * kTile + ty;
    float acc = 0.0f;
    for (int64_t l0 = 0; l0 < v.depth; l0 += kTile) {
      as[ty][tx] = i < v.rows && l0 + tx < v.depth ? Ld(a, i * v.a_rs + (l0 + tx) * v.a_cs) : 0.0f;
      bs[ty][tx] = l0 + ty < v.depth && j < v.cols ? Ld(b, (l0 + ty) * v.b_rs + j * v.b_cs) : 0.0f;
      __syncthreads();
#pragma unroll
      for (int l = 0; l < kTile; ++l) acc += as[ty][l] * bs[l][tx];
      __syncthreads();
    }
    if (i < v.rows && j < v.cols) St(c, i * v.c_rs + j, acc);
  }
}

}  // namespace

absl::Status RunCuda(const GroupedGemmParams& p, void* stream) {
  if (absl::Status s = CanImplement(p); !s.ok()) return s;
  if (p.num_groups > 65535) return absl::InvalidArgumentError("grouped_gemm: num_groups > 65535");
  const bool wgrad = p.form == GroupedGemmForm::kBackwardWeight;
  const int64_t rows = wgrad ? p.n : p.m;
  const int64_t cols = p.form == GroupedGemmForm::kForward ? p.n : p.k;
  if (rows == 0 || cols == 0) return absl::OkStatus();
  const int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
  if (col_tiles > 0x7fffffff) return absl::InvalidArgumentError("grouped_gemm: too many columns");
  const dim3 grid(static_cast<unsigned>(col_tiles),
                  static_cast<unsigned>(std::min(row_tiles, kMaxGridY)),
                  static_cast<unsigned>(p.num_groups));
  const dim3 block(kTile, kTile);
  auto s = static_cast<cudaStream_t>(stream);
  if (p.elem == ElemType::kF32) {
    GroupedGemmKernel<float><<<grid, block, 0, s>>>(p, row_tiles);
  } else {
    GroupedGemmKernel<uint16_t><<<grid, block, 0, s>>>(p, row_tiles);
  }
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) {
    return absl::InternalError(absl::StrCat("grouped_gemm: launch: ", cudaGetErrorString(e)));
  }
  return absl::OkStatus();
}

}  // namespace ucp::kernels
