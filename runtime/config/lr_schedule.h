// The learning rate DeepSpeed's schedulers set (specs/deepspeed-runtime.md §4.7) and ZeRO's
// dynamic loss scaler (§4.6), as plain arithmetic. Torch-free.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/config/ds_config.h"

namespace ucp::runtime {

// The lr DeepSpeed's scheduler sets when its `last_batch_iteration` is `last_batch_iteration`:
// -1 at construction (the lr of the first optimizer step), then +1 after each step that was not
// skipped. So WarmupLR runs the first two steps at warmup_min_lr. `base_lr` is the optimizer
// group's lr (WarmupLR's default max; WarmupCosineLR's reference). No scheduler: base_lr.
double ScheduledLr(const SchedulerConfig& scheduler, double base_lr, int64_t last_batch_iteration);

// DeepSpeed's DynamicLossScaler as ZeRO uses it (fp16/loss_scaler.py update_scale), or a static
// scale (`dynamic` false: Update does nothing).
struct DynamicLossScaler {
  double cur_scale = 1.0;
  int64_t cur_iter = 0;
  int64_t last_overflow_iter = -1;
  int cur_hysteresis = 1;

  bool dynamic = false;
  int64_t scale_window = 1000;
  double min_scale = 1.0;
  int delayed_shift = 1;  // = hysteresis
  bool consecutive_hysteresis = false;
  bool raise_error_at_min_scale = true;  // ZeRO keeps DeepSpeed's default

  // From the config: dynamic fp16 scaling, or the static scale (1 for bf16/fp32).
  static DynamicLossScaler FromConfig(const TrainConfig& config);

  // One optimizer step's outcome. FailedPrecondition where DeepSpeed raises: an overflow when
  // the scale is already at the minimum (the state is then left as DeepSpeed leaves it).
  absl::Status Update(bool overflow);
};

}  // namespace ucp::runtime
