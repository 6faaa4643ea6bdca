#include "runtime/engine/adam.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/sqrt.h>

#include <cmath>

namespace ucp::runtime {

void AdamUpdate(const AdamStep& s, at::Tensor& p, at::Tensor& m, at::Tensor& v,
                const at::Tensor& grad) {
  at::Tensor g = grad;
  if (s.torch_form) {
    // torch/optim/adamw.py (1.13) _single_tensor_adamw; adam.py the same with L2 decay.
    if (s.adam_w_mode) {
      p.mul_(1 - s.lr * s.weight_decay);
    } else if (s.weight_decay != 0) {
      g = g.add(p, s.weight_decay);
    }
    m.mul_(s.beta1).add_(g, 1 - s.beta1);
    v.mul_(s.beta2).addcmul_(g, g, 1 - s.beta2);
    const double bc1 = s.bias_correction ? 1 - std::pow(s.beta1, s.step) : 1.0;
    const double bc2 = s.bias_correction ? 1 - std::pow(s.beta2, s.step) : 1.0;
    const double step_size = s.lr / bc1;
    at::Tensor denom = (v.sqrt() / std::sqrt(bc2)).add_(s.eps);
    p.addcdiv_(m, denom, -step_size);
    return;
  }
  // FusedAdam (multi_tensor_adam.cu): bias corrections as floats, update = m̂ / (sqrt(v̂) + eps).
  const float bc1 = s.bias_correction ? 1 - static_cast<float>(std::pow(s.beta1, s.step)) : 1.0f;
  const float bc2 = s.bias_correction ? 1 - static_cast<float>(std::pow(s.beta2, s.step)) : 1.0f;
  if (!s.adam_w_mode && s.weight_decay != 0) g = g.add(p, s.weight_decay);
  m.mul_(s.beta1).add_(g, 1 - s.beta1);
  v.mul_(s.beta2).addcmul_(g, g, 1 - s.beta2);
  at::Tensor update = (m / bc1) / ((v / bc2).sqrt_().add_(s.eps));
  if (s.adam_w_mode && s.weight_decay != 0) update.add_(p, s.weight_decay);
  p.add_(update, -s.lr);
}

}  // namespace ucp::runtime
