// Selective activation checkpointing's "keep the attention output" half (deepspeed-runtime.md
// §3.8; docs/runtime.md): the engine re-runs each unit's forward in backward, and a scope set
// around those two forwards lets CausalAttention skip its own recompute. Under kRecord (the
// first, graph-less forward) each CausalAttention call appends its output [B, h, T, dv]; under
// kReplay (the re-run, autograd on) the calls take those outputs back in order, as autograd
// nodes that keep only q, k and v and whose backward recomputes the scores and softmax, then
// applies the same backward kernels autograd would: the gradients are bitwise those of the plain
// graph, which keeps the [B, h, T, T] softmax alive from forward to backward. Model code is not
// involved: every model that builds its attention from decoder_blocks.h gets it.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <vector>

namespace ucp::runtime {

struct AttentionCache {
  enum class Mode { kRecord, kReplay };
  std::vector<at::Tensor> outputs;  // in call order, each cast back to q's dtype
  size_t next = 0;                  // kReplay: the next output to hand back
};

// Makes `cache` the current one of this thread in `mode` while alive (they do not nest: the
// engine runs one unit at a time).
class AttentionCacheScope {
 public:
  AttentionCacheScope(AttentionCache& cache, AttentionCache::Mode mode);
  ~AttentionCacheScope();
  AttentionCacheScope(const AttentionCacheScope&) = delete;
  AttentionCacheScope& operator=(const AttentionCacheScope&) = delete;
};

// The causal attention core, q [B, h, T, dq], k [B, h, T, dq], v [B, h, T, dv] →
// [B, h, T, dv] in q's dtype: softmax(q_f32 k_f32^T / sqrt(dq), causal) v_f32. Recorded or
// replayed when a scope is current, a plain autograd graph otherwise.
at::Tensor CausalAttentionCore(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

}  // namespace ucp::runtime
