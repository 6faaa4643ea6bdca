// The AutoEP mixture-of-experts layer (deepspeed-runtime.md §1.3-1.5), as DeepSpeed's
// AutoEPMoELayer computes it: token-choice top-k router (softmax or sigmoid scores in fp32,
// optional group-limited routing, renormalisation, scale), tokens sorted by expert, exchanged with
// the ranks that own the experts (one count exchange, then one uneven all-to-all), the local
// experts' SwiGLU MLPs run as one grouped GEMM (or a per-expert loop), the way back, and the
// weighted combine in fp32. Dropless: no capacity, no auxiliary loss. Backward is autograd through
// all of it; expert gradients are not reduced here (the engine reduces them over expert-DP).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "runtime/dist/comm.h"

namespace ucp::runtime {

struct MoeSpec {
  int64_t num_experts = 0, top_k = 0, hidden = 0, intermediate = 0;
  bool sigmoid = false;        // score_func sigmoid (else softmax)
  bool route_norm = true;      // top-k scores divided by their sum (+ 1e-20)
  double route_scale = 1.0;    // multiplier on the routing weights
  bool score_pre = false;      // score_apply "pre": weight the expert input, plain sum after
  int64_t num_groups = 0;      // group-limited routing: expert groups (0: none)
  int64_t limited_groups = 0;  //   groups kept
  bool group_top2_sum = true;  //   a group's score: sum of its top-2 (else its max)
  bool grouped_gemm = true;    // use_grouped_mm: one batched GEMM over the local experts
};

struct MoeWeights {
  at::Tensor gate;  // router.gate.weight [E, H]
  at::Tensor w1;    // experts.w1 [E_l, I, H] (gate projection)
  at::Tensor w2;    // experts.w2 [E_l, H, I] (down projection)
  at::Tensor w3;    // experts.w3 [E_l, I, H] (up projection)
};

// The routing of T tokens: selected experts [T, K] (int64), their weights [T, K] (fp32) and the
// tokens per expert [E] (int64).
struct Routing {
  at::Tensor selected, weights, counts;
};
Routing Route(const MoeSpec& spec, const at::Tensor& gate, const at::Tensor& x);

// x [T, H] -> [T, H]. `ep` is the expert-parallel group (nullptr or size 1: every expert local);
// this rank's experts are [ep.rank() * E_l, (ep.rank() + 1) * E_l).
at::Tensor MoeForward(const MoeSpec& spec, const MoeWeights& w, const at::Tensor& x, Comm* ep);

// The local experts' SwiGLU over rows already grouped by expert (group e has sizes[e] rows):
// out_e = (silu(x_e w1_e^T) * (x_e w3_e^T)) w2_e^T. `grouped`: one grouped GEMM per projection
// (kernels/grouped_gemm); otherwise one LibTorch GEMM per expert (use_grouped_mm false, as
// DeepSpeed's per-expert loop).
at::Tensor GroupedExperts(const at::Tensor& x, const std::vector<int64_t>& sizes,
                          const at::Tensor& w1, const at::Tensor& w2, const at::Tensor& w3,
                          bool grouped);

}  // namespace ucp::runtime
