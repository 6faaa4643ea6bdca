// Ulysses sequence parallelism around attention (deepspeed-runtime.md §3.2-3.3), what AutoSP
// inserts around every attention of the decoders ucp builds: each rank of the SP group holds
// S/P positions of the sequence with all heads; one all-to-all gives each rank all S positions of
// N/P heads for attention, and the inverse gives the sequence shards back. Differentiable: the
// backward of each exchange is the other one. With no group (size 1) both are the identity.
#pragma once

#include <ATen/core/Tensor.h>

#include "runtime/model/tp_ops.h"

namespace ucp::runtime {

// x [B, S/P, N, D] -> [B, S, N/P, D]: rank j gets heads [j*N/P, (j+1)*N/P), the sequence in rank
// order (N % P == 0).
at::Tensor SeqToHeads(const TpGroup& sp, const at::Tensor& x);
// The inverse: [B, S, N/P, D] -> [B, S/P, N, D].
at::Tensor HeadsToSeq(const TpGroup& sp, const at::Tensor& x);

}  // namespace ucp::runtime
