// Adam / AdamW on one flat fp32 partition, in the two forms DeepSpeed runs (deepspeed-runtime.md
// §4.5): torch.optim's ("torch_adam": true, the fixtures' setting; the same ATen ops in the same
// order as torch 1.13's single-tensor AdamW, so bitwise equal on the same LibTorch) and FusedAdam's
// element-wise formula (the default).
#pragma once

#include <ATen/core/Tensor.h>

namespace ucp::runtime {

struct AdamStep {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool adam_w_mode = true;  // decoupled weight decay (AdamW); false: L2 added to the gradient
  bool bias_correction = true;
  bool torch_form = true;  // torch.optim.AdamW / Adam; false: FusedAdam's formula
  double step = 1;         // the step count after this update (state['step'] + 1)
};

// param, exp_avg, exp_avg_sq: fp32, updated in place; grad: fp32, unscaled and clipped.
void AdamUpdate(const AdamStep& s, at::Tensor& param, at::Tensor& exp_avg, at::Tensor& exp_avg_sq,
                const at::Tensor& grad);

}  // namespace ucp::runtime
