// CUDA router (router_topk.h): one thread per token. E and K are small (tens to a few hundred
// experts, K <= 32), so each thread rescans its logits instead of staging scores: pass 1 the
// softmax max and sum, then scores are recomputed where needed. Selection picks K times the best
// expert that ranks after the previous pick in (value desc, index asc) order, which is the CPU
// reference's order. expf differs from glibc's by an ulp or two, so scores may differ in the last
// bits; the selection only differs on near-ties.
#include <cuda_runtime.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/router/router_topk.h"

namespace ucp::kernels {
namespace {

struct TokenScores {
  const float* logits;
  const float* bias;
  bool softmax;
  float mx, inv;
  __device__ float Score(int32_t e) const {
    return softmax ? expf(logits[e] - mx) * inv : 1.0f / (1.0f + expf(-logits[e]));
  }
  __device__ float Choice(int32_t e) const { return bias ? Score(e) + bias[e] : Score(e); }
};

// a ranks before b: larger value, ties to the lower index.
__device__ bool Before(float va, int32_t a, float vb, int32_t b) {
  return va > vb || (va == vb && a < b);
}

__global__ void RouterKernel(RouterTopKParams p) {
  const int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (t >= p.num_tokens) return;
  const int32_t e_count = p.num_experts, k = p.top_k;
  TokenScores ts{p.logits + t * e_count, p.expert_bias, p.score_func == RouterScoreFunc::kSoftmax,
                 0.0f, 1.0f};
  if (ts.softmax) {
    float mx = ts.logits[0], sum = 0.0f;
    for (int32_t e = 1; e < e_count; ++e) mx = fmaxf(mx, ts.logits[e]);
    for (int32_t e = 0; e < e_count; ++e) sum += expf(ts.logits[e] - mx);
    ts.mx = mx, ts.inv = 1.0f / sum;
  }
  if (p.scores) {
    for (int32_t e = 0; e < e_count; ++e) p.scores[t * e_count + e] = ts.Score(e);
  }
  uint64_t keep = ~uint64_t{0};  // bit g: group g kept
  const int32_t groups = p.num_groups > 1 ? p.num_groups : 1, per = e_count / groups;
  if (groups > 1) {
    float gs[kRouterMaxGroups];
    for (int32_t g = 0; g < groups; ++g) {
      float b1 = -INFINITY, b2 = -INFINITY;
      for (int32_t e = g * per; e < (g + 1) * per; ++e) {
        const float c = ts.Choice(e);
        if (c > b1) {
          b2 = b1, b1 = c;
        } else if (c > b2) {
          b2 = c;
        }
      }
      gs[g] = p.group_score == RouterGroupScore::kMax ? b1 : b1 + b2;
    }
    keep = 0;
    for (int32_t l = 0; l < p.num_limited_groups; ++l) {
      int32_t best = -1;
      for (int32_t g = 0; g < groups; ++g) {
        if (!((keep >> g) & 1) && (best < 0 || gs[g] > gs[best])) best = g;
      }
      keep |= uint64_t{1} << best;
    }
  }
  float prev_v = INFINITY, sum = 0.0f;
  int32_t prev = -1;
  float top[kRouterMaxTopK];
  for (int32_t j = 0; j < k; ++j) {
    int32_t best = -1;
    float best_v = 0.0f;
    for (int32_t e = 0; e < e_count; ++e) {
      if (!((keep >> (e / per)) & 1)) continue;
      const float c = ts.Choice(e);
      if (prev >= 0 && !Before(prev_v, prev, c, e)) continue;  // already picked
      if (best < 0 || Before(c, e, best_v, best)) best = e, best_v = c;
    }
    if (best < 0) best = 0, best_v = ts.Choice(0);  // only NaN choices get here; stay in bounds
    prev = best, prev_v = best_v;
    p.selected[t * k + j] = best;
    top[j] = ts.Score(best);
    sum += top[j];
    atomicAdd(p.tokens_per_expert + best, 1);
  }
  for (int32_t j = 0; j < k; ++j) {
    float v = top[j];
    if (p.route_norm) v /= sum + 1e-20f;
    p.top_scores[t * k + j] = v * p.route_scale;
  }
}

}  // namespace

absl::Status RunCuda(const RouterTopKParams& p, void* stream) {
  if (absl::Status s = CanImplement(p); !s.ok()) return s;
  auto s = static_cast<cudaStream_t>(stream);
  if (cudaError_t e = cudaMemsetAsync(p.tokens_per_expert, 0, p.num_experts * sizeof(int32_t), s);
      e != cudaSuccess) {
    return absl::InternalError(absl::StrCat("router_topk: memset: ", cudaGetErrorString(e)));
  }
  if (p.num_tokens == 0) return absl::OkStatus();
  constexpr int kThreads = 128;
  const int64_t blocks = (p.num_tokens + kThreads - 1) / kThreads;
  if (blocks > 0x7fffffff) return absl::InvalidArgumentError("router_topk: too many tokens");
  RouterKernel<<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(p);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) {
    return absl::InternalError(absl::StrCat("router_topk: launch: ", cudaGetErrorString(e)));
  }
  return absl::OkStatus();
}

}  // namespace ucp::kernels
