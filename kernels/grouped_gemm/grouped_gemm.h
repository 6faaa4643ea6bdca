// Grouped GEMM for MoE experts (deepspeed-runtime.md §1.4 step 8): G groups of rows of one
// activation matrix, each multiplied by its own expert weight. With M = sum of the group sizes,
// X [M, K] (rows of group g are offs[g-1] .. offs[g]-1, offs[-1] = 0), W [G, N, K], Y [M, N]:
//
//   kForward        Y_g  = X_g · W_g^T      (NT: torch._grouped_mm(x, w.transpose(-2,-1), offs))
//   kBackwardData   dX_g = dY_g · W_g       (NN; dY [M, N], dX [M, K])
//   kBackwardWeight dW_g = dY_g^T · X_g     (TN; reduction over the group's rows; dW [G, N, K];
//                                            a group with no rows gets dW_g = 0)
//
// The three forms are the transpose flags of one kernel; m, n and k keep the forward's meaning in
// all of them so the runtime passes the same numbers to a layer's forward and backward. Storage is
// fp32 or bf16 (inputs and output alike); accumulation is always fp32, and bf16 output is rounded
// to nearest even once, at the end. `offs` is torch._grouped_mm's: int32, inclusive cumulative
// ends (generate_permute_indices' m_offsets), host memory for Run, device memory for RunCuda.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/common/common.h"

namespace ucp::kernels {

enum class GroupedGemmForm : uint8_t { kForward, kBackwardData, kBackwardWeight };

struct GroupedGemmParams {
  GroupedGemmForm form = GroupedGemmForm::kForward;
  ElemType elem = ElemType::kF32;
  int32_t num_groups = 0;         // G
  int64_t m = 0;                  // rows of X / dY / Y (offs[G-1] <= m; rows past it untouched)
  int64_t n = 0;                  // output features (rows of each W_g)
  int64_t k = 0;                  // input features (columns of X and W_g)
  const int32_t* offs = nullptr;  // [G] cumulative row ends
  // Inputs: kForward reads x, w; kBackwardData reads dy, w; kBackwardWeight reads dy, x.
  const void* x = nullptr;   // [m, k]
  const void* w = nullptr;   // [G, n, k]
  const void* dy = nullptr;  // [m, n]
  void* out = nullptr;       // Y [m, n] | dX [m, k] | dW [G, n, k]
  // CPU reference only: worker threads for one call (1 runs inline). The whole call's tiles, of
  // every group, go to one pool, which is why one grouped call beats a loop of per-group calls.
  int32_t num_threads = 1;
};

// Sizes, pointers and overflow; never reads offs (it may be device memory).
// InvalidArgument names the first bad field.
absl::Status CanImplement(const GroupedGemmParams& p);

// CanImplement, plus offs must be non-decreasing in [0, m] (InvalidArgument otherwise).
absl::Status CheckOffsets(const GroupedGemmParams& p);

// CPU reference: cache-blocked, packed fp32 panels, a 4x16 register tile the compiler vectorises.
// Runs CheckOffsets first; on error writes nothing.
absl::Status Run(const GroupedGemmParams& p);

// CUDA (kernels/grouped_gemm/grouped_gemm.cu): tiled shared-memory kernel, one launch for all
// groups, no host sync (offs stay on the device). `stream` is a cudaStream_t. Unimplemented when
// built without UCP_BUILD_CUDA.
absl::Status RunCuda(const GroupedGemmParams& p, void* stream);

// One group's problem as a plain GEMM C[i,j] = sum_l A(i,l) B(l,j) over strided views; shared by
// the CPU reference and the CUDA kernel so both cut the three forms the same way.
struct GemmView {
  int64_t rows = 0, cols = 0, depth = 0;  // C is rows x cols, reduction over depth
  int64_t a_off = 0, a_rs = 0, a_cs = 0;  // A(i,l) at a[a_off + i*a_rs + l*a_cs]
  int64_t b_off = 0, b_rs = 0, b_cs = 0;  // B(l,j) at b[b_off + l*b_rs + j*b_cs]
  int64_t c_off = 0, c_rs = 0;            // C(i,j) at out[c_off + i*c_rs + j]
};

// View of group g whose rows are [r0, r1); A is x or dy and B is w or x as the form says.
UCP_HD GemmView MakeGemmView(GroupedGemmForm form, int64_t n, int64_t k, int32_t g, int64_t r0,
                             int64_t r1) {
  GemmView v;
  const int64_t mg = r1 - r0;
  switch (form) {
    case GroupedGemmForm::kForward:  // A = x_g [mg, k], B(l,j) = w_g[j, l]
      v = {mg, n, k, r0 * k, k, 1, g * n * k, 1, k, r0 * n, n};
      break;
    case GroupedGemmForm::kBackwardData:  // A = dy_g [mg, n], B = w_g [n, k]
      v = {mg, k, n, r0 * n, n, 1, g * n * k, k, 1, r0 * k, k};
      break;
    case GroupedGemmForm::kBackwardWeight:  // A(i,l) = dy[r0+l, i], B = x_g [mg, k]
      v = {n, k, mg, r0 * n, 1, n, r0 * k, k, 1, g * n * k, k};
      break;
  }
  return v;
}

}  // namespace ucp::kernels
