// CPU reference of router_topk.h, in torch's operation order where it is cheap to follow
// (softmax: max, exp(x - max), sum, multiply by 1/sum, as ATen's _vec_softmax_lastdim; sigmoid:
// 1 / (1 + exp(-x))). ATen sums the exponentials in vector lanes, so scores can differ from torch's
// in the last bits.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/router/router_topk.h"

namespace ucp::kernels {
namespace {

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("router_topk: ", what));
}

void Scores(const RouterTopKParams& p, const float* logits, float* scores) {
  const int32_t e_count = p.num_experts;
  if (p.score_func == RouterScoreFunc::kSigmoid) {
    for (int32_t e = 0; e < e_count; ++e) scores[e] = 1.0f / (1.0f + std::exp(-logits[e]));
    return;
  }
  const float mx = *std::max_element(logits, logits + e_count);
  float sum = 0.0f;
  for (int32_t e = 0; e < e_count; ++e) sum += (scores[e] = std::exp(logits[e] - mx));
  const float inv = 1.0f / sum;
  for (int32_t e = 0; e < e_count; ++e) scores[e] *= inv;
}

// Larger value first; ties to the lower index.
bool Before(const std::vector<float>& v, int32_t a, int32_t b) {
  return v[a] > v[b] || (v[a] == v[b] && a < b);
}

// Sets choice to -inf outside the num_limited_groups best groups.
void LimitGroups(const RouterTopKParams& p, std::vector<float>& choice) {
  const int32_t groups = p.num_groups, per = p.num_experts / groups;
  std::vector<float> gscore(groups);
  for (int32_t g = 0; g < groups; ++g) {
    const float* c = choice.data() + g * per;
    std::vector<float> top(c, c + per);
    std::partial_sort(top.begin(), top.begin() + std::min(per, 2), top.end(), std::greater<>());
    gscore[g] = p.group_score == RouterGroupScore::kMax ? top[0] : top[0] + top[1];
  }
  std::vector<int32_t> order(groups);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return Before(gscore, a, b); });
  for (int32_t r = p.num_limited_groups; r < groups; ++r) {
    std::fill_n(choice.begin() + order[r] * per, per, -std::numeric_limits<float>::infinity());
  }
}

}  // namespace

absl::Status CanImplement(const RouterTopKParams& p) {
  if (p.num_tokens < 0 || p.num_experts < 1 || p.num_experts > (1 << 20)) {
    return Invalid(absl::StrCat("num_tokens=", p.num_tokens, " num_experts=", p.num_experts));
  }
  if (p.num_tokens > std::numeric_limits<int64_t>::max() / 4 / p.num_experts) {
    return Invalid("num_tokens * num_experts overflows");
  }
  if (p.top_k < 1 || p.top_k > p.num_experts || p.top_k > kRouterMaxTopK) {
    return Invalid(absl::StrCat("top_k=", p.top_k, " not in [1, min(E=", p.num_experts, ", ",
                                kRouterMaxTopK, ")]"));
  }
  if (p.score_func != RouterScoreFunc::kSoftmax && p.score_func != RouterScoreFunc::kSigmoid) {
    return Invalid("unknown score_func");
  }
  if (p.num_groups < 0 || p.num_groups > kRouterMaxGroups) {
    return Invalid(absl::StrCat("num_groups=", p.num_groups));
  }
  if (p.num_groups > 1) {
    const int32_t per = p.num_experts / p.num_groups;
    if (p.num_experts % p.num_groups != 0) {
      return Invalid(
          absl::StrCat("num_groups=", p.num_groups, " does not divide E=", p.num_experts));
    }
    if (p.num_limited_groups < 1 || p.num_limited_groups > p.num_groups ||
        p.top_k > int64_t{p.num_limited_groups} * per) {
      return Invalid(absl::StrCat("num_limited_groups=", p.num_limited_groups, " with ", per,
                                  " experts per group cannot hold top_k=", p.top_k));
    }
    if (p.group_score == RouterGroupScore::kTop2Sum && per < 2) {
      return Invalid("top2_sum needs at least 2 experts per group");
    }
    if (p.group_score != RouterGroupScore::kMax && p.group_score != RouterGroupScore::kTop2Sum) {
      return Invalid("unknown group_score");
    }
  }
  if (!std::isfinite(p.route_scale)) return Invalid("route_scale not finite");
  if (!p.logits || !p.selected || !p.top_scores || !p.tokens_per_expert) {
    return Invalid("null logits or output pointer");
  }
  return absl::OkStatus();
}

absl::Status Run(const RouterTopKParams& p) {
  if (absl::Status s = CanImplement(p); !s.ok()) return s;
  const int32_t e_count = p.num_experts, k = p.top_k;
  std::fill_n(p.tokens_per_expert, e_count, 0);
  std::vector<float> scores(e_count), choice(e_count);
  std::vector<int32_t> idx(e_count);
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    Scores(p, p.logits + t * e_count, scores.data());
    if (p.scores) std::copy(scores.begin(), scores.end(), p.scores + t * e_count);
    for (int32_t e = 0; e < e_count; ++e) {
      choice[e] = p.expert_bias ? scores[e] + p.expert_bias[e] : scores[e];
    }
    if (p.num_groups > 1) LimitGroups(p, choice);
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return Before(choice, a, b); });
    int64_t* sel = p.selected + t * k;
    float* top = p.top_scores + t * k;
    float sum = 0.0f;
    for (int32_t j = 0; j < k; ++j) {
      sel[j] = idx[j];
      top[j] = scores[idx[j]];
      sum += top[j];
      ++p.tokens_per_expert[idx[j]];
    }
    for (int32_t j = 0; j < k; ++j) {
      if (p.route_norm) top[j] /= sum + 1e-20f;
      top[j] *= p.route_scale;
    }
  }
  return absl::OkStatus();
}

}  // namespace ucp::kernels
