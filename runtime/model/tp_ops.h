// AutoTP's collectives as autograd ops (deepspeed-runtime.md §2.3), over the tensor-parallel
// group of this rank:
//   CopyToTp      identity forward, SUM all-reduce of the gradient backward: the input of a
//                 column-parallel linear (every rank's partial input gradient summed), and the
//                 weight of a replicated_with_grad_allreduce parameter (Qwen3's q/k norms);
//   ReduceFromTp  SUM all-reduce forward, identity backward: the output of a row-parallel linear;
//   GatherColumns all-gather of the last dim from uneven widths forward, this rank's columns of the
//                 gradient backward: a column-parallel linear with gather_output (lm_head).
//   ScatterToTp   this rank's columns of the last dim forward, backward the gradient at those
//                 columns of zeros summed over TP: the replicated input of a row-parallel lm_head
//                 (DeepSpeed's LinearAllreduceWithReplicatedInput).
// With no group (nullptr or size 1) each is the identity.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "runtime/dist/comm.h"

namespace ucp::runtime {

struct TpGroup {
  Comm* comm = nullptr;
  int rank = 0, size = 1;
  bool active() const { return comm != nullptr && size > 1; }
};

at::Tensor CopyToTp(const TpGroup& tp, const at::Tensor& x);
at::Tensor ReduceFromTp(const TpGroup& tp, const at::Tensor& x);
// x [..., widths[tp.rank]] -> [..., sum(widths)], rank r's columns at their offset.
at::Tensor GatherColumns(const TpGroup& tp, const at::Tensor& x,
                         const std::vector<int64_t>& widths);
// x [..., sum(widths)] -> [..., widths[tp.rank]], rank r's columns at their offset.
at::Tensor ScatterToTp(const TpGroup& tp, const at::Tensor& x, const std::vector<int64_t>& widths);

}  // namespace ucp::runtime
