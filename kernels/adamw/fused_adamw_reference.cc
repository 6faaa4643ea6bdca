// CPU reference of fused_adamw.h: adam.cc's ATen op sequence, one element at a time. Each line
// names the ATen call it mirrors; std::fma is ATen's vec::fmadd. kernels/ compiles with
// -ffp-contract=off so the compiler adds no FMA of its own.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/adamw/fused_adamw.h"

namespace ucp::kernels {
namespace {

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("fused_adamw: ", what));
}

}  // namespace

absl::Status CanImplement(const FusedAdamWParams& p) {
  if (p.numel < 0) return Invalid(absl::StrCat("numel=", p.numel));
  if (p.numel > 0 && (!p.param || !p.grad || !p.exp_avg || !p.exp_avg_sq)) {
    return Invalid("null param, grad, exp_avg or exp_avg_sq");
  }
  if (!std::isfinite(p.lr) || !std::isfinite(p.eps) || !std::isfinite(p.weight_decay)) {
    return Invalid("lr, eps and weight_decay must be finite");
  }
  if (!(p.beta1 >= 0 && p.beta1 < 1) || !(p.beta2 >= 0 && p.beta2 < 1)) {
    return Invalid(absl::StrCat("betas (", p.beta1, ", ", p.beta2, ") not in [0, 1)"));
  }
  if (p.bias_correction && !(p.step >= 1)) return Invalid(absl::StrCat("step=", p.step, " < 1"));
  if (p.form != AdamForm::kTorch && p.form != AdamForm::kFused) return Invalid("unknown form");
  return absl::OkStatus();
}

absl::Status Run(const FusedAdamWParams& p) {
  if (absl::Status s = CanImplement(p); !s.ok()) return s;
  const AdamScalars c = MakeAdamScalars(p);
  for (int64_t i = 0; i < p.numel; ++i) {
    float g = p.grad[i], w = p.param[i], m = p.exp_avg[i], v = p.exp_avg_sq[i];
    if (c.decoupled_torch) w = w * c.decay_mul;       // p.mul_(1 - lr*wd)
    if (c.l2 != 0) g = std::fma(w, c.l2, g);          // g.add(p, wd)
    m = std::fma(g, c.one_minus_beta1, m * c.beta1);  // m.mul_(b1).add_(g, 1 - b1)
    // v.mul_(b2).addcmul_(g, g, 1 - b2): ATen's `self + value*t1*t2`, which GCC contracts to
    // fma(value*t1, t2, self) in LibTorch's AVX2 kernels (measured against torch 1.13: bitwise).
    v = std::fma(c.one_minus_beta2 * g, g, v * c.beta2);
    if (p.form == AdamForm::kTorch) {
      const float denom = std::sqrt(v) / c.sqrt_bc2 + c.eps;  // (v.sqrt() / sqrt(bc2)).add_(eps)
      w = w + c.neg_step * m / denom;                         // p.addcdiv_(m, denom, -lr/bc1)
    } else {
      float update = (m / c.bc1) / (std::sqrt(v / c.bc2) + c.eps);
      if (c.wd_update != 0) update = std::fma(w, c.wd_update, update);  // update.add_(p, wd)
      w = std::fma(update, c.neg_step, w);                              // p.add_(update, -lr)
    }
    p.param[i] = w;
    p.exp_avg[i] = m;
    p.exp_avg_sq[i] = v;
  }
  return absl::OkStatus();
}

}  // namespace ucp::kernels
