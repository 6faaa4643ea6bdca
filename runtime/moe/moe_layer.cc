#include "runtime/moe/moe_layer.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bincount.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/split_with_sizes.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "runtime/moe/all_to_all.h"
#include "runtime/moe/grouped_gemm_op.h"

namespace ucp::runtime {
namespace {

at::TensorOptions Long() { return at::TensorOptions().dtype(at::kLong); }

std::vector<int64_t> ToVector(const at::Tensor& t) {
  at::Tensor c = t.to(at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// The inverse of a permutation: inv[perm[i]] = i.
at::Tensor Inverse(const at::Tensor& perm) {
  return at::empty_like(perm).scatter_(0, perm, at::arange(perm.numel(), Long()));
}

// A stable sort's indices (ties keep their order, as torch.argsort(stable=True)).
at::Tensor StableArgsort(const at::Tensor& keys) {
  return std::get<1>(at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false));
}

}  // namespace

Routing Route(const MoeSpec& s, const at::Tensor& gate, const at::Tensor& x) {
  const int64_t T = x.size(0), E = s.num_experts;
  at::Tensor logits = at::linear(x, gate).to(at::kFloat);
  at::Tensor scores = s.sigmoid ? logits.sigmoid() : at::softmax(logits, 1);
  at::Tensor choice = scores.detach();
  if (s.num_groups > 0) {
    at::Tensor g = choice.view({T, s.num_groups, E / s.num_groups});
    at::Tensor group_scores =
        s.group_top2_sum ? std::get<0>(g.topk(2, -1)).sum(-1) : std::get<0>(g.max(-1));
    at::Tensor keep = std::get<1>(group_scores.topk(s.limited_groups, -1, true, false));
    at::Tensor masked =
        at::ones({T, s.num_groups}, at::TensorOptions().dtype(at::kBool)).scatter_(1, keep, false);
    choice =
        g.masked_fill(masked.unsqueeze(-1), -std::numeric_limits<double>::infinity()).view({T, E});
  }
  Routing r;
  r.selected = std::get<1>(choice.topk(s.top_k, -1, /*largest=*/true, /*sorted=*/false));
  at::Tensor top = scores.gather(1, r.selected);
  if (s.route_norm) top = top / (top.sum(-1, true) + 1e-20);
  r.weights = top * s.route_scale;
  r.counts = at::bincount(r.selected.reshape({-1}), {}, E);
  return r;
}

at::Tensor GroupedExperts(const at::Tensor& x, const std::vector<int64_t>& sizes,
                          const at::Tensor& w1, const at::Tensor& w2, const at::Tensor& w3,
                          bool grouped) {
  const int64_t el = w1.size(0);
  if (!grouped) {
    std::vector<at::Tensor> parts = at::split_with_sizes(x, sizes, 0);
    for (int64_t e = 0; e < el; ++e) {
      at::Tensor h = at::silu(at::matmul(parts[e], w1[e].t())) * at::matmul(parts[e], w3[e].t());
      parts[e] = at::matmul(h, w2[e].t());
    }
    return at::cat(parts, 0);
  }
  // One grouped GEMM per projection over every local expert (runtime/moe/grouped_gemm_op.h).
  at::Tensor h = at::silu(GroupedLinear(x, w1, sizes)) * GroupedLinear(x, w3, sizes);
  return GroupedLinear(h, w2, sizes);
}

at::Tensor MoeForward(const MoeSpec& s, const MoeWeights& w, const at::Tensor& x, Comm* ep) {
  const int64_t T = x.size(0), K = s.top_k, H = x.size(1), el = w.w1.size(0);
  const Routing r = Route(s, w.gate, x);
  // Sort the (token, slot) pairs by expert: rows are then grouped by destination rank too.
  const at::Tensor order = StableArgsort(r.selected.reshape({-1}));
  at::Tensor routed = x.index_select(0, at::div(order, K, "floor"));
  if (s.score_pre) {
    at::Tensor w_sorted = r.weights.reshape({-1}).index_select(0, order);
    routed = (routed.to(at::kFloat) * w_sorted.unsqueeze(1)).to(x.scalar_type());
  }
  const int ep_size = ep != nullptr ? ep->size() : 1;
  at::Tensor out;
  if (ep_size == 1) {
    out = GroupedExperts(routed, ToVector(r.counts), w.w1, w.w2, w.w3, s.grouped_gemm);
  } else {
    // Counts first (row d: what goes to rank d, per its local expert), then the tokens.
    const at::Tensor sent = r.counts.view({ep_size, el});
    const at::Tensor recv = ExchangeCounts(*ep, sent);
    const std::vector<int64_t> in_splits = ToVector(sent.sum(1)),
                               out_splits = ToVector(recv.sum(1));
    at::Tensor got = AllToAllRows(*ep, routed, in_splits, out_splits);
    // Received rows are by source rank, then local expert: regroup them by local expert.
    at::Tensor expert_of_row =
        at::repeat_interleave(at::arange(el, Long()).repeat({ep_size}), recv.reshape({-1}));
    const at::Tensor perm = StableArgsort(expert_of_row);
    at::Tensor y = GroupedExperts(got.index_select(0, perm), ToVector(recv.sum(0)), w.w1, w.w2,
                                  w.w3, s.grouped_gemm);
    out = AllToAllRows(*ep, y.index_select(0, Inverse(perm)), out_splits, in_splits);
  }
  // Back to (token, slot) order, then the weighted combine in fp32.
  at::Tensor buf = out.index_select(0, Inverse(order)).view({T, K, H});
  if (s.score_pre) return buf.sum(1);
  return (buf.to(at::kFloat) * r.weights.unsqueeze(-1)).sum(1).to(x.scalar_type());
}

}  // namespace ucp::runtime
