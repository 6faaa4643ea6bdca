// The token exchange of an expert-parallel MoE layer (deepspeed-runtime.md §1.4 steps 6 and 10):
// an all-to-all of rows with uneven splits whose backward is the same exchange with the splits
// swapped, so that autograd carries gradients back to the ranks the tokens came from.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "runtime/dist/comm.h"

namespace ucp::runtime {

// Sends in_splits[r] consecutive rows of x [N, H] to rank r of `comm`; returns the
// sum(out_splits) rows received, in rank order. Differentiable.
at::Tensor AllToAllRows(Comm& comm, const at::Tensor& x, const std::vector<int64_t>& in_splits,
                        const std::vector<int64_t>& out_splits);

// Bytes this process has sent to other ranks in AllToAllRows (forward and backward) since it
// started: the token traffic a benchmark compares with the analytic minimum.
int64_t AllToAllBytesSent();

// The plain exchange of one int64 count per (rank, local expert): row r of `counts` [size, E_l]
// goes to rank r; returns [size, E_l] with row s = what rank s sends here. Not differentiable.
at::Tensor ExchangeCounts(Comm& comm, const at::Tensor& counts);

}  // namespace ucp::runtime
