#include "runtime/model/attention_cache.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/_softmax.h>
#include <ATen/ops/_softmax_backward_data.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

namespace ucp::runtime {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

thread_local AttentionCache* current = nullptr;
thread_local AttentionCache::Mode current_mode = AttentionCache::Mode::kRecord;

at::Tensor CausalMask(int64_t T) {
  return at::ones({T, T}, at::TensorOptions().dtype(at::kBool)).triu(1);
}

double Scale(const at::Tensor& q) { return std::sqrt(static_cast<double>(q.size(-1))); }

// softmax(q k^T / sqrt(dq), causal) in fp32, op for op what the plain graph computes.
at::Tensor Probabilities(const at::Tensor& qf, const at::Tensor& kf, const at::Tensor& mask) {
  at::Tensor att = at::matmul(qf, kf.transpose(-1, -2)) / Scale(qf);
  return att.masked_fill(mask, -std::numeric_limits<double>::infinity()).softmax(-1);
}

// The same with the same kernels writing in place (same values), so that one [B, h, T, T]
// buffer lives instead of two: for the recorded forward and the backward (no graph recorded).
at::Tensor ProbabilitiesInPlace(const at::Tensor& qf, const at::Tensor& kf,
                                const at::Tensor& mask) {
  at::Tensor att = at::matmul(qf, kf.transpose(-1, -2));
  att.div_(Scale(qf)).masked_fill_(mask, -std::numeric_limits<double>::infinity());
  return at::_softmax_out(att, att, -1, false);
}

at::Tensor Plain(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool in_place) {
  const at::Tensor qf = q.to(at::kFloat), kf = k.to(at::kFloat), mask = CausalMask(q.size(2));
  const at::Tensor p = in_place ? ProbabilitiesInPlace(qf, kf, mask) : Probabilities(qf, kf, mask);
  return at::matmul(p, v.to(at::kFloat)).to(q.scalar_type());
}

// at::matmul of two [B, h, r, c] tensors folds them to [B * h, r, c] and runs bmm; its autograd
// is bmm's backward through those reshapes. Fold repeats the reshape so the backward below
// hands the same (strided) operands to the same kernels.
at::Tensor Fold(const at::Tensor& t) { return t.reshape({-1, t.size(-2), t.size(-1)}); }

// The replayed attention node: forward hands back the recorded output; backward is the plain
// graph's backward (ToCopy, bmm, softmax, masked_fill, div, transpose; derivatives.yaml) with
// the softmax recomputed from q and k instead of kept.
class ReplayedAttention : public torch::autograd::Function<ReplayedAttention> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v) {
    AttentionCache& cache = *current;
    if (cache.next >= cache.outputs.size())
      throw std::logic_error("selective activation checkpointing: the re-run calls attention " +
                             std::to_string(cache.next + 1) + " times, the forward called it " +
                             std::to_string(cache.outputs.size()));
    at::Tensor out = std::move(cache.outputs[cache.next++]);
    if (out.size(0) != q.size(0) || out.size(1) != q.size(1) || out.size(2) != q.size(2) ||
        out.size(3) != v.size(3))
      throw std::logic_error(
          "selective activation checkpointing: the re-run's attention shape "
          "differs from the forward's");
    ctx->save_for_backward({q, k, v});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2];
    const at::Tensor qf = q.to(at::kFloat), kf = k.to(at::kFloat), vf = v.to(at::kFloat);
    const at::Tensor mask = CausalMask(q.size(2));
    at::Tensor p = ProbabilitiesInPlace(qf, kf, mask);
    // out = matmul(p, vf).to(dtype)
    const at::Tensor g = Fold(grad_out[0].to(at::kFloat));
    at::Tensor gv = Fold(p).transpose(1, 2).bmm(g).reshape(vf.sizes());
    at::Tensor gs = g.bmm(Fold(vf).transpose(1, 2)).reshape(p.sizes());
    at::_softmax_backward_data_out(gs, gs, p, -1, at::kFloat);  // row by row: in place is safe
    p.reset();
    gs.masked_fill_(mask, 0).div_(Scale(q));
    // att = matmul(qf, kf^T)
    const at::Tensor kt = kf.transpose(-1, -2), gs3 = Fold(gs);
    gs.reset();
    at::Tensor gq = gs3.bmm(Fold(kt).transpose(1, 2)).reshape(qf.sizes());
    at::Tensor gk = Fold(qf).transpose(1, 2).bmm(gs3).reshape(kt.sizes()).transpose(-1, -2);
    return {gq.to(q.scalar_type()), gk.to(k.scalar_type()), gv.to(v.scalar_type())};
  }
};

}  // namespace

AttentionCacheScope::AttentionCacheScope(AttentionCache& cache, AttentionCache::Mode mode) {
  current = &cache;
  current_mode = mode;
  if (mode == AttentionCache::Mode::kReplay) cache.next = 0;
}

AttentionCacheScope::~AttentionCacheScope() { current = nullptr; }

at::Tensor CausalAttentionCore(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  if (current == nullptr) return Plain(q, k, v, false);
  if (current_mode == AttentionCache::Mode::kReplay) return ReplayedAttention::apply(q, k, v);
  at::Tensor out = Plain(q, k, v, /*in_place=*/true);
  current->outputs.push_back(out);
  return out;
}

}  // namespace ucp::runtime
