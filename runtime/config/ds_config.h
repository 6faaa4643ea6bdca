// The DeepSpeed JSON config, as `ucp train` reads it (specs/deepspeed-runtime.md §5): DeepSpeed's
// defaults and batch arithmetic, stricter than DeepSpeed where a silent difference would change
// the numbers. Unknown keys at any level are errors with a "did you mean" suggestion; keys
// DeepSpeed knows whose effect ucp does not implement are Unimplemented; harmless ones are
// accepted and ignored. Torch-free.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "runtime/config/autoep_config.h"
#include "runtime/config/tp_specs.h"

namespace ucp::runtime {

enum class Precision : uint8_t { kFp32, kBf16, kFp16 };
const char* PrecisionName(Precision precision);  // "fp32", "bf16", "fp16"

// optimizer.type Adam or AdamW (case-insensitive), FusedAdam's defaults (§4.5).
struct AdamConfig {
  std::string type;  // as written ("Adam", "adamw", ...)
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool bias_correction = true;
  // "Adam" is decoupled AdamW unless params.adam_w_mode is false; "AdamW" is always decoupled.
  bool adam_w_mode = true;
  bool torch_adam = false;
};

// scheduler.type: "" (none), WarmupLR, WarmupDecayLR or WarmupCosineLR (§4.7).
struct SchedulerConfig {
  std::string type;
  double warmup_min_lr = 0.0;
  // Absent: the optimizer lr for WarmupLR; WarmupDecayLR's own default 0.001 is filled in by the
  // parser (its constructor's default differs from WarmupLR's).
  std::optional<double> warmup_max_lr;
  int64_t warmup_num_steps = 1000;
  std::string warmup_type = "log";  // "log" or "linear"
  int64_t total_num_steps = 0;      // WarmupDecayLR, WarmupCosineLR (required there)
  double warmup_min_ratio = 0.0;    // WarmupCosineLR
  double cos_min_ratio = 1e-4;      // WarmupCosineLR
};

// fp16 loss scaling (§4.6); bf16/fp32 use a static scale of 1.
struct LossScaleConfig {
  bool dynamic = false;
  double static_scale = 1.0;  // fp16.loss_scale when > 0
  int initial_scale_power = 16;
  int loss_scale_window = 1000;
  int hysteresis = 2;
  bool consecutive_hysteresis = false;
  double min_loss_scale = 1.0;
};

// zero_optimization (§5); stage3_* aliases resolved to the plain names.
struct ZeroConfig {
  int stage = 0;
  bool contiguous_gradients = true;
  bool reduce_scatter = true;
  int64_t reduce_bucket_size = 500000000;
  bool use_multi_rank_bucket_allreduce = true;
  bool allgather_partitions = true;
  int64_t allgather_bucket_size = 500000000;
  bool overlap_comm = false;  // DeepSpeed's null default: true for stage 3, false otherwise
  bool load_from_fp32_weights = true;
  bool round_robin_gradients = false;
  int64_t sub_group_size = 1000000000;
  int64_t prefetch_bucket_size = 50000000;
  int64_t param_persistence_threshold = 100000;
  int64_t model_persistence_threshold = std::numeric_limits<int64_t>::max();  // sys.maxsize
  int64_t max_live_parameters = 1000000000;
  int64_t max_reuse_distance = 1000000000;
  bool gather_16bit_weights_on_model_save = false;
  bool ignore_unused_parameters = true;
};

// csv_monitor (§10.1).
struct CsvMonitorConfig {
  bool enabled = false;
  std::string output_path;
  std::string job_name = "DeepSpeedJobName";
};

struct TrainConfig {
  // Resolved by the batch rule: train = micro * GAS * world.
  int64_t train_batch_size = 0, micro_batch_per_gpu = 0, gradient_accumulation_steps = 0;
  int64_t steps_per_print = 0;  // 0: never (DeepSpeed's null)
  AdamConfig optimizer;
  bool has_optimizer = false;
  SchedulerConfig scheduler;
  double gradient_clipping = 1.0;  // DeepSpeed's default since #8068; 0 disables
  bool prescale_gradients = false;
  double gradient_predivide_factor = 1.0;
  Precision precision = Precision::kFp32;
  bool bf16_check_grad_overflow = true;
  std::optional<Precision> grad_accum_dtype;         // data_types.grad_accum_dtype
  std::optional<Precision> communication_data_type;  // null: the model dtype
  LossScaleConfig loss_scale;
  ZeroConfig zero;
  bool load_universal = false;          // checkpoint.load_universal
  std::string tag_validation = "Warn";  // checkpoint.tag_validation: Ignore, Warn or Fail
  bool use_node_local_storage = false;  // checkpoint.use_node_local_storage
  CsvMonitorConfig csv_monitor;
  // tensor_parallel.autotp_size (1: off). Tensor-parallel ranks are not data parallel: the batch
  // rule counts world / autotp_size ranks.
  int autotp_size = 1;
  // tensor_parallel.preset_model / partition_config (tp_specs.h): config-driven AutoTP specs,
  // which take priority over the model's tp_plan (§2.2).
  TpPartitionSettings tp_partition;
  // sequence_parallel_size (1: off): Ulysses / AutoSP; SP ranks share a sample (its sequence
  // split), so the batch rule counts world / (tp * sp) ranks.
  int sp_size = 1;
  bool wall_clock_breakdown = false;
  // An `activation_checkpointing` block: the runtime checkpoints every model unit, selectively
  // (attention outputs kept; docs/runtime.md).
  bool activation_checkpointing = false;
  AutoEpConfig expert_parallel;  // the `expert_parallel` block (AutoEP, autoep_config.h)
  // Top-level switch: swaps the EP/EDP rank layout (specs/deepspeed-runtime.md §1.6).
  bool use_data_before_expert_parallelism = false;

  // The gradient accumulation dtype in effect (the model dtype unless data_types says otherwise).
  Precision EffectiveGradAccumDtype() const { return grad_accum_dtype.value_or(precision); }
  // DeepSpeed's BF16_Optimizer runs: bf16 + fp32 gradient accumulation + ZeRO stage 1 (§4.1).
  bool bf16_optimizer() const;

  nlohmann::json raw;  // the config as given (saved as ds_config in checkpoints)
};

// `world` is the data-parallel size used for the batch arithmetic (§0 step 4).
absl::StatusOr<TrainConfig> ParseTrainConfig(const nlohmann::json& config, int world);
// Reads and parses a JSON file; errors name the file.
absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path, int world);

}  // namespace ucp::runtime
