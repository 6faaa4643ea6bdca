// The one file where LibTorch meets kernels/ (ARCHITECTURE.md: K takes POD params, never
// tensors): the experts' grouped GEMM as an autograd op over kernels/grouped_gemm. The CPU path
// runs the kernels' blocked reference over all experts' tiles at once; Debian's LibTorch has a
// generic (reference) BLAS, about 2.8 GFLOP/s on one core here, so this is also far faster than
// a loop of at::mm calls (docs/benchmarks/moe_cpu2c_202612.md).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace ucp::runtime {

// x [M, K] with its rows grouped (group g: sizes[g] consecutive rows), w [G, N, K] (fp32 or
// bf16, one dtype): y [M, N], y_g = x_g · w_g^T. Differentiable in x and w.
at::Tensor GroupedLinear(const at::Tensor& x, const at::Tensor& w,
                         const std::vector<int64_t>& sizes);

}  // namespace ucp::runtime
