// The building blocks the Hugging Face decoders share (specs/fixture-model.md "Common
// structure"): RMSNorm in fp32, rotate-half RoPE, causal attention in fp32, SwiGLU. Stateless
// functions of tensors, so DenseDecoder and MoeDecoder compute them identically.
#pragma once

#include <ATen/core/Tensor.h>

#include "runtime/model/tp_ops.h"

namespace ucp::runtime {

// weight * (x_f32 * rsqrt(mean(x_f32^2) + eps)).to(dtype)
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);
// Rotate-half RoPE over the last dim d of x [B, heads, T, d], positions 0..T-1.
at::Tensor Rope(const at::Tensor& x, double theta);
// q [B, h, T, dq], k [B, h, T, dq], v [B, h, T, dv] (K/V already repeated to h heads): softmax of
// q_f32 k_f32^T / sqrt(dq) under the causal mask, times v_f32, cast back; returns [B, T, h * dv].
// Its core is where selective activation checkpointing keeps the output (attention_cache.h).
at::Tensor CausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);
// Grouped-query attention of Llama / Mistral / Qwen / Mixtral: q/k/v projections (optional
// biases), optional per-head RMSNorm of q and k before RoPE (Qwen3), K/V heads repeated to the
// query heads, o projection. Undefined tensors are absent.
// With `tp` active (AutoTP) q/k/v are column-parallel (this rank's heads) and o row-parallel,
// each as its flag says.
// With `sp` active (AutoSP / Ulysses) x holds this rank's S/P positions: q/k/v are exchanged for
// all positions of N/P heads (KV heads repeated first when P > N_kv), RoPE uses global
// positions, and the output is exchanged back.
struct GqaWeights {
  at::Tensor q, k, v, o, q_bias, k_bias, v_bias, o_bias, q_norm, k_norm;
  const TpGroup* tp = nullptr;
  const TpGroup* sp = nullptr;
  // Under `tp`, which projections are split (a partition_config may leave some replicated):
  // a column projection sums its input's gradient over TP, a row o sums its output.
  bool q_col = true, k_col = true, v_col = true, o_row = true;
};
at::Tensor GqaAttention(const at::Tensor& x, const GqaWeights& w, int64_t head_dim, double eps,
                        double theta);
// down(silu(x gate^T) * (x up^T))
at::Tensor SwiGlu(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& up,
                  const at::Tensor& down);

}  // namespace ucp::runtime
