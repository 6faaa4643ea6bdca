// One pass of Adam / AdamW over a flat fp32 partition (param, grad, exp_avg, exp_avg_sq), in the
// two forms DeepSpeed runs (deepspeed-runtime.md §4.5), with the fields of runtime/engine/adam.h's
// AdamStep so the runtime can hand its step over unchanged:
//
//   kTorch  torch.optim.AdamW / Adam (torch 1.13 _single_tensor_adamw), as runtime/engine/adam.cc
//           runs it with ATen ops:  p *= 1 - lr*wd (AdamW) | g += wd*p (Adam);  m = b1*m +
//           (1-b1)*g; v = b2*v + (1-b2)*g*g;  p += -(lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
//   kFused  FusedAdam (multi_tensor_adam.cu): bc1, bc2 as float; g += wd*p (Adam);
//           update = (m/bc1) / (sqrt(v/bc2) + eps) (+ wd*p for AdamW);  p += -lr * update
//
// Exactness. Every element follows the float operations of adam.cc's ATen calls one for one:
// scalars are computed in double on the host and rounded to float where ATen rounds its Scalar
// arguments; `a.add_(b, alpha)` is an FMA (ATen's vec::fmadd) and `addcmul_` is
// fma(value*t1, t2, self) (GCC contracts ATen's vector mul+add in LibTorch's AVX2 kernels).
// Measured against Debian's torch 1.13.1 (the LibTorch the runtime links), both forms, Adam and
// AdamW, 100003 elements including the scalar tail: bitwise equal. Another LibTorch build (other
// compiler flags, CPU capability or CUDA ops) may differ by an ulp per operation. The CUDA kernel
// uses the same correctly rounded intrinsics (__fmaf_rn, __fdiv_rn, __fsqrt_rn), so it bit-matches
// this reference; it does not bit-match DeepSpeed's FusedAdam kernel, which lets nvcc contract.
#pragma once

#include <cmath>
#include <cstdint>

#include "absl/status/status.h"

namespace ucp::kernels {

enum class AdamForm : uint8_t { kTorch, kFused };

struct FusedAdamWParams {
  int64_t numel = 0;
  float* param = nullptr;       // updated in place
  const float* grad = nullptr;  // unscaled, clipped
  float* exp_avg = nullptr;     // m, in place
  float* exp_avg_sq = nullptr;  // v, in place
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool adam_w_mode = true;  // decoupled decay (AdamW); false: L2 decay added to the gradient
  bool bias_correction = true;
  AdamForm form = AdamForm::kTorch;
  double step = 1;  // the step count after this update (state['step'] + 1)
};

// The per-call float constants, computed once on the host exactly as adam.cc rounds them; the CPU
// reference and the CUDA kernel both take them from here.
struct AdamScalars {
  float decay_mul = 1.0f;  // kTorch AdamW: 1 - lr*wd
  float l2 = 0.0f;         // L2 mode: wd (g += wd*p); 0 when off
  float wd_update = 0.0f;  // kFused AdamW: wd (update += wd*p); 0 when off
  float beta1 = 0.0f, one_minus_beta1 = 0.0f, beta2 = 0.0f, one_minus_beta2 = 0.0f;
  float bc1 = 1.0f, bc2 = 1.0f;  // kFused: the float bias corrections
  float sqrt_bc2 = 1.0f;         // kTorch: float(sqrt(double bc2))
  float neg_step = 0.0f;         // kTorch: -(lr/bc1); kFused: -lr
  float eps = 0.0f;
  bool decoupled_torch = false;  // kTorch AdamW with p *= decay_mul first
};

inline AdamScalars MakeAdamScalars(const FusedAdamWParams& p) {
  AdamScalars s;
  s.beta1 = static_cast<float>(p.beta1);
  s.one_minus_beta1 = static_cast<float>(1 - p.beta1);
  s.beta2 = static_cast<float>(p.beta2);
  s.one_minus_beta2 = static_cast<float>(1 - p.beta2);
  s.eps = static_cast<float>(p.eps);
  if (!p.adam_w_mode && p.weight_decay != 0) s.l2 = static_cast<float>(p.weight_decay);
  if (p.form == AdamForm::kTorch) {
    s.decoupled_torch = p.adam_w_mode;
    s.decay_mul = static_cast<float>(1 - p.lr * p.weight_decay);
    const double bc1 = p.bias_correction ? 1 - std::pow(p.beta1, p.step) : 1.0;
    const double bc2 = p.bias_correction ? 1 - std::pow(p.beta2, p.step) : 1.0;
    s.neg_step = static_cast<float>(-(p.lr / bc1));
    s.sqrt_bc2 = static_cast<float>(std::sqrt(bc2));
  } else {
    s.bc1 = p.bias_correction ? 1 - static_cast<float>(std::pow(p.beta1, p.step)) : 1.0f;
    s.bc2 = p.bias_correction ? 1 - static_cast<float>(std::pow(p.beta2, p.step)) : 1.0f;
    if (p.adam_w_mode && p.weight_decay != 0) s.wd_update = static_cast<float>(p.weight_decay);
    s.neg_step = static_cast<float>(-p.lr);
  }
  return s;
}

// numel >= 0, pointers non-null (when numel > 0), finite hyper-parameters, betas in [0, 1),
// step >= 1 with bias correction. InvalidArgument naming the field.
absl::Status CanImplement(const FusedAdamWParams& p);
absl::Status Run(const FusedAdamWParams& p);
absl::Status RunCuda(const FusedAdamWParams& p, void* stream);

}  // namespace ucp::kernels
