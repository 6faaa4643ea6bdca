// Selective activation checkpointing's attention (attention_cache.h): recorded without a graph,
// replayed as a node that recomputes the softmax in backward, it gives bitwise the output and the
// q / k / v gradients of the plain autograd graph, in fp32 and bf16, for the strided q / v that
// GqaAttention passes (transposed [B, T, h, d]) and the contiguous repeated K of GQA.
#include "runtime/model/attention_cache.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>

#include <stdexcept>
#include <vector>

#include "gtest/gtest.h"

namespace ucp::runtime {
namespace {

constexpr int64_t B = 2, T = 37, H = 4, D = 6;

at::Tensor Rand(std::vector<int64_t> shape, uint64_t seed, at::ScalarType dtype) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::normal(0.0, 1.0, shape, g).to(dtype).set_requires_grad(true);
}

struct Result {
  at::Tensor out;
  std::vector<at::Tensor> grads;
};

// Two attention calls (as two layers of a unit would make), then a loss; `selective`: the first
// forward graph-less under kRecord, the second under kReplay.
Result RunAttention(at::ScalarType dtype, bool selective) {
  at::Tensor qs = Rand({B, T, H, D}, 1, dtype), ks = Rand({B, T, H / 2, D}, 2, dtype),
             vs = Rand({B, T, H, D}, 3, dtype);
  auto forward = [&] {
    at::Tensor q = qs.transpose(1, 2), v = vs.transpose(1, 2);
    at::Tensor k = ks.transpose(1, 2).repeat_interleave(2, 1);
    at::Tensor a = CausalAttentionCore(q, k, v);
    return CausalAttentionCore(a * 0.5 + q, k, v);
  };
  at::Tensor out;
  AttentionCache cache;
  if (selective) {
    {
      at::NoGradGuard no_grad;
      AttentionCacheScope record(cache, AttentionCache::Mode::kRecord);
      forward();
    }
    EXPECT_EQ(cache.outputs.size(), 2u);
    AttentionCacheScope replay(cache, AttentionCache::Mode::kReplay);
    out = forward();
  } else {
    out = forward();
  }
  at::Tensor w = at::linspace(-1.0, 1.0, out.numel()).view(out.sizes());
  Result r{out.detach(), torch::autograd::grad({(out.to(at::kFloat) * w).sum()}, {qs, ks, vs})};
  return r;
}

TEST(AttentionCache, ReplayIsBitwiseThePlainGraph) {
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(at::toString(dtype));
    const Result plain = RunAttention(dtype, false), selective = RunAttention(dtype, true);
    EXPECT_TRUE(at::equal(plain.out, selective.out));
    ASSERT_EQ(plain.grads.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_TRUE(plain.grads[i].defined() && selective.grads[i].defined());
      EXPECT_TRUE(at::equal(plain.grads[i], selective.grads[i])) << "gradient " << i;
      EXPECT_GT(plain.grads[i].abs().sum().item<double>(), 0);
    }
  }
}

TEST(AttentionCache, ReplayingMoreCallsThanRecordedIsAnError) {
  at::Tensor q = Rand({1, 2, 3, 4}, 1, at::kFloat);
  AttentionCache cache;
  {
    at::NoGradGuard no_grad;
    AttentionCacheScope record(cache, AttentionCache::Mode::kRecord);
    CausalAttentionCore(q, q, q);
  }
  AttentionCacheScope replay(cache, AttentionCache::Mode::kReplay);
  CausalAttentionCore(q, q, q);
  EXPECT_THROW(CausalAttentionCore(q, q, q), std::logic_error);
}

}  // namespace
}  // namespace ucp::runtime
