#include "runtime/model/decoder_blocks.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/silu.h>

#include "runtime/model/attention_cache.h"
#include "runtime/model/seq_parallel.h"

namespace ucp::runtime {

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w, double eps) {
  at::Tensor f = x.to(at::kFloat);
  f = f * at::rsqrt(f.pow(2).mean({-1}, true) + eps);
  return w * f.to(x.scalar_type());
}

at::Tensor Rope(const at::Tensor& x, double theta) {
  const int64_t d = x.size(-1), T = x.size(2);
  at::Tensor inv = 1.0 / at::pow(theta, at::arange(0, d, 2, at::TensorOptions().dtype(at::kFloat)) /
                                            static_cast<double>(d));
  at::Tensor ang =
      at::arange(T, at::TensorOptions().dtype(at::kFloat)).unsqueeze(1) * inv.unsqueeze(0);
  at::Tensor cos = at::cat({ang.cos(), ang.cos()}, -1).to(x.scalar_type());
  at::Tensor sin = at::cat({ang.sin(), ang.sin()}, -1).to(x.scalar_type());
  at::Tensor x1 = x.narrow(-1, 0, d / 2), x2 = x.narrow(-1, d / 2, d / 2);
  return x * cos + at::cat({-x2, x1}, -1) * sin;
}

at::Tensor CausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const int64_t B = q.size(0), T = q.size(2);
  // The core is where selective activation checkpointing keeps the output (attention_cache.h).
  return CausalAttentionCore(q, k, v).transpose(1, 2).reshape({B, T, -1});
}

at::Tensor GqaAttention(const at::Tensor& x, const GqaWeights& w, int64_t hd, double eps,
                        double theta) {
  const int64_t B = x.size(0), T = x.size(1);
  const TpGroup tp = w.tp != nullptr ? *w.tp : TpGroup{};
  const TpGroup sp = w.sp != nullptr ? *w.sp : TpGroup{};
  // [B, T, heads, hd], per-head norms applied (they act per position and head).
  auto proj = [&](const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& norm,
                  bool column) {
    const at::Tensor in = column ? CopyToTp(tp, x) : x;
    at::Tensor t = bias.defined() ? at::linear(in, weight, bias) : at::linear(in, weight);
    t = t.view({B, T, -1, hd});
    return norm.defined() ? RmsNorm(t, norm, eps) : t;
  };
  at::Tensor q = proj(w.q, w.q_bias, w.q_norm, w.q_col), k = proj(w.k, w.k_bias, w.k_norm, w.k_col),
             v = proj(w.v, w.v_bias, at::Tensor(), w.v_col);
  if (sp.active()) {
    // Fewer KV heads than SP ranks: each KV head repeated so every rank receives one (§3.3).
    if (k.size(2) < sp.size && k.size(2) > 0) {
      k = k.repeat_interleave(sp.size / k.size(2), 2);
      v = v.repeat_interleave(sp.size / v.size(2), 2);
    }
    q = SeqToHeads(sp, q);
    k = SeqToHeads(sp, k);
    v = SeqToHeads(sp, v);
  }
  q = Rope(q.transpose(1, 2), theta);
  k = Rope(k.transpose(1, 2), theta);
  v = v.transpose(1, 2);
  // AutoTP with more ranks than KV heads leaves some ranks without heads (§2.4): their share of
  // the row-parallel o_proj is zero.
  const int64_t rep = k.size(1) > 0 ? q.size(1) / k.size(1) : 1;
  if (rep > 1) {
    k = k.repeat_interleave(rep, 1);
    v = v.repeat_interleave(rep, 1);
  }
  at::Tensor att = CausalAttention(q, k, v);  // [B, S, heads * hd]
  if (sp.active()) att = HeadsToSeq(sp, att.view({B, -1, q.size(1), hd})).reshape({B, T, -1});
  at::Tensor out = at::linear(att, w.o);
  if (w.o_row) out = ReduceFromTp(tp, out);
  return w.o_bias.defined() ? out + w.o_bias : out;
}

at::Tensor SwiGlu(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& up,
                  const at::Tensor& down) {
  return at::linear(at::silu(at::linear(x, gate)) * at::linear(x, up), down);
}

}  // namespace ucp::runtime
