// The MoE layer's pieces against plain LibTorch computations of the same function, mirroring
// DeepSpeed's TestRoutingAndLayerSemantics (deepspeed-runtime.md §7): the grouped GEMM op against
// a per-expert loop (values and gradients, an expert with no tokens included), route_scale,
// group-limited routing, and the whole layer (ep 1) against a token-by-token reference.
#include "runtime/moe/moe_layer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>

#include <vector>

#include "gtest/gtest.h"
#include "runtime/moe/grouped_gemm_op.h"

namespace ucp::runtime {
namespace {

at::Tensor Rand(std::vector<int64_t> shape, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::normal(0.0, 0.5, shape, g);
}

TEST(GroupedExperts, GroupedEqualsPerExpertLoopWithGradients) {
  const std::vector<int64_t> sizes = {5, 0, 9, 3};  // expert 1 gets no token
  const int64_t H = 12, I = 20;
  at::Tensor x0 = Rand({17, H}, 1), w1 = Rand({4, I, H}, 2), w2 = Rand({4, H, I}, 3),
             w3 = Rand({4, I, H}, 4);
  std::vector<at::Tensor> out, grads;
  for (bool grouped : {true, false}) {
    std::vector<at::Tensor> in = {
        x0.clone().set_requires_grad(true), w1.clone().set_requires_grad(true),
        w2.clone().set_requires_grad(true), w3.clone().set_requires_grad(true)};
    at::Tensor y = GroupedExperts(in[0], sizes, in[1], in[2], in[3], grouped);
    out.push_back(y.detach());
    std::vector<at::Tensor> g =
        torch::autograd::grad({(y * y).sum()}, {in[0], in[1], in[2], in[3]});
    grads.insert(grads.end(), g.begin(), g.end());
  }
  EXPECT_TRUE(at::allclose(out[0], out[1], 1e-5, 1e-5));
  for (int i = 0; i < 4; ++i)
    EXPECT_TRUE(at::allclose(grads[i], grads[4 + i], 1e-4, 1e-4)) << "input " << i;
  EXPECT_EQ(grads[1][1].abs().sum().item<double>(), 0.0);  // the empty expert's w1 gradient
}

TEST(GroupedLinear, Bf16MatchesFp32Within1Ulp) {
  const std::vector<int64_t> sizes = {3, 4};
  at::Tensor x = Rand({7, 16}, 5), w = Rand({2, 8, 16}, 6);
  at::Tensor ref =
      GroupedLinear(x.to(at::kBFloat16).to(at::kFloat), w.to(at::kBFloat16).to(at::kFloat), sizes);
  at::Tensor got = GroupedLinear(x.to(at::kBFloat16), w.to(at::kBFloat16), sizes);
  EXPECT_TRUE(at::allclose(got.to(at::kFloat), ref, 1e-2, 1e-2));
}

TEST(Router, RouteScaleScalesWeightsExactlyAndKeepsTheChoice) {
  MoeSpec s;
  s.num_experts = 8;
  s.top_k = 2;
  at::Tensor x = Rand({10, 6}, 7), gate = Rand({8, 6}, 8);
  const Routing a = Route(s, gate, x);
  s.route_scale = 2.5;
  const Routing b = Route(s, gate, x);
  EXPECT_TRUE(at::equal(a.selected, b.selected));
  EXPECT_TRUE(at::equal(a.weights * 2.5, b.weights));
  EXPECT_EQ(a.counts.sizes(), at::IntArrayRef({8}));
  EXPECT_EQ(a.counts.sum().item<int64_t>(), 20);
  EXPECT_TRUE(at::allclose(a.weights.sum(-1), at::ones({10})));  // route_norm
}

TEST(Router, GroupLimitedRoutingPicksOnlyFromTheBestGroups) {
  MoeSpec s;
  s.num_experts = 8;
  s.top_k = 2;
  s.sigmoid = true;
  s.num_groups = 4;
  s.limited_groups = 1;
  at::Tensor x = Rand({32, 6}, 9), gate = Rand({8, 6}, 10);
  const Routing r = Route(s, gate, x);
  // One group kept: both choices of a token are experts of one group (2 experts per group).
  EXPECT_TRUE(at::equal(at::div(r.selected.select(1, 0), 2, "floor"),
                        at::div(r.selected.select(1, 1), 2, "floor")));
}

TEST(MoeForward, EqualsATokenByTokenReference) {
  MoeSpec s;
  s.num_experts = 4;
  s.top_k = 2;
  s.hidden = 6;
  s.intermediate = 5;
  MoeWeights w{Rand({4, 6}, 11), Rand({4, 5, 6}, 12), Rand({4, 6, 5}, 13), Rand({4, 5, 6}, 14)};
  at::Tensor x = Rand({9, 6}, 15);
  for (bool grouped : {true, false}) {
    s.grouped_gemm = grouped;
    at::Tensor y = MoeForward(s, w, x, nullptr);
    const Routing r = Route(s, w.gate, x);
    for (int64_t t = 0; t < 9; ++t) {
      at::Tensor want = at::zeros({6});
      for (int64_t k = 0; k < 2; ++k) {
        const int64_t e = r.selected[t][k].item<int64_t>();
        at::Tensor h = at::silu(at::mv(w.w1[e], x[t])) * at::mv(w.w3[e], x[t]);
        want += r.weights[t][k] * at::mv(w.w2[e], h);
      }
      EXPECT_TRUE(at::allclose(y[t], want, 1e-5, 1e-5)) << "token " << t << " grouped " << grouped;
    }
  }
}

}  // namespace
}  // namespace ucp::runtime
