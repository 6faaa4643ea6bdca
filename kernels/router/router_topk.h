// Token-choice top-k router (deepspeed-runtime.md §1.4 step 1, AutoEP's TokenChoiceTopKRouter),
// from the gate's logits on: per token t
//   scores = softmax(logits[t]) or sigmoid(logits[t])                  (fp32)
//   choice = scores + expert_bias                                      (bias only steers the
//   choice) group-limited routing (num_groups > 1): experts are G groups of E/G; a group's score is
//   its max
//     choice ("max") or the sum of its two largest ("top2_sum"); the num_limited_groups best groups
//     stay, every expert of the others gets -inf
//   selected = top-k experts of choice; top_scores = scores[selected] (unbiased)
//   route_norm: top_scores /= sum(top_scores) + 1e-20;  top_scores *= route_scale
//   tokens_per_expert = int32 histogram of selected over all tokens
// Ties (in groups and experts) go to the lowest index; selected is ordered by decreasing choice.
// torch.topk(sorted=False) leaves the order unspecified, and only the set matters downstream
// (the combine sums over the k slots). NaN logits give an unspecified choice.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace ucp::kernels {

enum class RouterScoreFunc : uint8_t { kSoftmax, kSigmoid };
enum class RouterGroupScore : uint8_t { kMax, kTop2Sum };

inline constexpr int32_t kRouterMaxTopK = 32;    // CUDA keeps the selection in registers
inline constexpr int32_t kRouterMaxGroups = 64;  // group mask is one 64-bit word

struct RouterTopKParams {
  int64_t num_tokens = 0;   // T
  int32_t num_experts = 0;  // E
  int32_t top_k = 0;        // K, 1 <= K <= min(E, kRouterMaxTopK)
  RouterScoreFunc score_func = RouterScoreFunc::kSoftmax;
  const float* logits = nullptr;       // [T, E]
  const float* expert_bias = nullptr;  // [E] or null (expert_bias + e_score_correction_bias summed)
  int32_t num_groups = 0;          // 0 or 1: no group limit; else divides E, <= kRouterMaxGroups
  int32_t num_limited_groups = 0;  // groups kept, 1..num_groups (K must fit in them)
  RouterGroupScore group_score = RouterGroupScore::kMax;
  bool route_norm = false;
  float route_scale = 1.0f;
  int64_t* selected = nullptr;           // out [T, K] (int64 like torch.topk's indices)
  float* top_scores = nullptr;           // out [T, K]
  int32_t* tokens_per_expert = nullptr;  // out [E], overwritten (not accumulated)
  float* scores = nullptr;               // optional out [T, E]: the unbiased scores
};

// Sizes, pointers, K vs E, the group settings. InvalidArgument naming the field.
absl::Status CanImplement(const RouterTopKParams& p);
// CPU reference.
absl::Status Run(const RouterTopKParams& p);
// CUDA: one thread per token (E and K small), histogram by atomicAdd.
absl::Status RunCuda(const RouterTopKParams& p, void* stream);

}  // namespace ucp::kernels
