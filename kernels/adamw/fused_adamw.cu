// CUDA fused AdamW (fused_adamw.h): the reference's float operations with correctly rounded
// intrinsics, so nvcc cannot contract a*b+c into an FMA the reference lacks (or drop one it has);
// results equal the CPU reference bitwise.
#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/adamw/fused_adamw.h"

namespace ucp::kernels {
namespace {

__global__ void AdamKernel(FusedAdamWParams p, AdamScalars c, bool torch_form) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < p.numel;
       i += int64_t{gridDim.x} * blockDim.x) {
    float g = p.grad[i], w = p.param[i], m = p.exp_avg[i], v = p.exp_avg_sq[i];
    if (c.decoupled_torch) w = __fmul_rn(w, c.decay_mul);
    if (c.l2 != 0) g = __fmaf_rn(w, c.l2, g);
    m = __fmaf_rn(g, c.one_minus_beta1, __fmul_rn(m, c.beta1));
    v = __fmaf_rn(__fmul_rn(c.one_minus_beta2, g), g, __fmul_rn(v, c.beta2));
    if (torch_form) {
      const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), c.sqrt_bc2), c.eps);
      w = __fadd_rn(w, __fdiv_rn(__fmul_rn(c.neg_step, m), denom));
    } else {
      float update =
          __fdiv_rn(__fdiv_rn(m, c.bc1), __fadd_rn(__fsqrt_rn(__fdiv_rn(v, c.bc2)), c.eps));
      if (c.wd_update != 0) update = __fmaf_rn(w, c.wd_update, update);
      w = __fmaf_rn(update, c.neg_step, w);
    }
    p.param[i] = w;
    p.exp_avg[i] = m;
    p.exp_avg_sq[i] = v;
  }
}

}  // namespace

absl::Status RunCuda(const FusedAdamWParams& p, void* stream) {
  if (absl::Status s = CanImplement(p); !s.ok()) return s;
  if (p.numel == 0) return absl::OkStatus();
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((p.numel + kThreads - 1) / kThreads, 8192);
  AdamKernel<<<static_cast<unsigned>(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      p, MakeAdamScalars(p), p.form == AdamForm::kTorch);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) {
    return absl::InternalError(absl::StrCat("fused_adamw: launch: ", cudaGetErrorString(e)));
  }
  return absl::OkStatus();
}

}  // namespace ucp::kernels
