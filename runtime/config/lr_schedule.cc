#include "runtime/config/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "absl/strings/str_cat.h"

namespace ucp::runtime {
namespace {

// The warmup fraction at iteration `it` (< N), log or linear (lr_schedules.py _get_gamma).
double WarmupGamma(const SchedulerConfig& s, int64_t n, int64_t it) {
  if (s.warmup_type == "linear") return static_cast<double>(it) / static_cast<double>(n);
  return (1.0 / std::log(static_cast<double>(n))) * std::log(static_cast<double>(it + 1));
}

}  // namespace

double ScheduledLr(const SchedulerConfig& s, double base_lr, int64_t it) {
  if (s.type.empty()) return base_lr;
  // DeepSpeed raises warmup_num_steps to at least 2 (log(1) would divide by zero).
  const int64_t n = std::max<int64_t>(2, s.warmup_num_steps);
  if (s.type == "WarmupCosineLR") {
    if (it < 0) return 0.0;  // its get_lr returns 0, not the warmup start, before any step
    double ratio;
    if (it < n) {
      ratio = s.warmup_min_ratio + WarmupGamma(s, n, it) * (1.0 - s.warmup_min_ratio);
    } else {
      const double real_step = static_cast<double>(it - n + 1);
      const double real_total = static_cast<double>(std::max<int64_t>(1, s.total_num_steps - n));
      const double progress = std::min(1.0, real_step / real_total);
      const double cosine = (1.0 + std::cos(std::numbers::pi * progress)) / 2.0;
      ratio = std::max(0.0, s.cos_min_ratio + (1.0 - s.cos_min_ratio) * cosine);
    }
    return base_lr * ratio;
  }
  const double min_lr = s.warmup_min_lr;
  const double max_lr = s.warmup_max_lr.value_or(s.type == "WarmupDecayLR" ? 0.001 : base_lr);
  if (it < 0) return min_lr;
  double gamma = 1.0;
  if (it < n) {
    gamma = WarmupGamma(s, n, it);
  } else if (s.type == "WarmupDecayLR") {
    gamma = std::max(0.0, static_cast<double>(s.total_num_steps - it) /
                              std::max(1.0, static_cast<double>(s.total_num_steps - n)));
  }
  return min_lr + (max_lr - min_lr) * gamma;
}

DynamicLossScaler DynamicLossScaler::FromConfig(const TrainConfig& config) {
  DynamicLossScaler scaler;
  const LossScaleConfig& l = config.loss_scale;
  if (config.precision != Precision::kFp16) return scaler;  // constant 1 (§4.6)
  scaler.dynamic = l.dynamic;
  scaler.cur_scale = l.dynamic ? std::ldexp(1.0, l.initial_scale_power) : l.static_scale;
  scaler.scale_window = l.loss_scale_window;
  scaler.min_scale = l.min_loss_scale;
  scaler.delayed_shift = l.hysteresis;
  scaler.cur_hysteresis = l.hysteresis;
  scaler.consecutive_hysteresis = l.consecutive_hysteresis;
  return scaler;
}

absl::Status DynamicLossScaler::Update(bool overflow) {
  if (!dynamic) return absl::OkStatus();
  if (overflow) {
    if (delayed_shift == 1 || cur_hysteresis == 1) {
      if (cur_scale == min_scale && raise_error_at_min_scale) {
        return absl::FailedPreconditionError(absl::StrCat(
            "loss scale already at its minimum ", min_scale, ": cannot decrease it further"));
      }
      cur_scale = std::max(cur_scale / 2.0, min_scale);
    } else {
      --cur_hysteresis;
    }
    last_overflow_iter = cur_iter;
  } else {
    if (consecutive_hysteresis) cur_hysteresis = delayed_shift;
    const int64_t stable_interval = cur_iter - last_overflow_iter - 1;
    if (stable_interval > 0 && stable_interval % scale_window == 0) {
      if (!consecutive_hysteresis) cur_hysteresis = delayed_shift;
      cur_scale *= 2.0;
    }
  }
  ++cur_iter;
  return absl::OkStatus();
}

}  // namespace ucp::runtime
