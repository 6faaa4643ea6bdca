#include "runtime/config/ds_config.h"

#include <cerrno>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "runtime/config/ds_config_internal.h"
#include "runtime/config/json_fields.h"

namespace ucp::runtime {
namespace {

using internal_ds_config::Invalid;
using internal_ds_config::kWhat;
using internal_ds_config::NotImplemented;
using internal_ds_config::ParseParallelism;
using internal_ds_config::ParseZeroOptimization;

// DeepSpeed's DtypeEnum spellings (config.py); int8 exists there but never as a training dtype.
absl::StatusOr<Precision> PrecisionFromName(const JsonField& field) {
  std::string name;
  UCP_RETURN_IF_ERROR(ReadString(kWhat, field, &name));
  if (name == "fp32" || name == "float32" || name == "float" || name == "torch.float32") {
    return Precision::kFp32;
  }
  if (name == "bf16" || name == "bfloat16" || name == "torch.bfloat16") return Precision::kBf16;
  if (name == "fp16" || name == "float16" || name == "half" || name == "torch.float16") {
    return Precision::kFp16;
  }
  return Invalid(absl::StrCat("`", field.path, "` must be fp32, bf16 or fp16, got \"", name, "\""));
}

// A feature block with an `enabled` switch that ucp does not implement: fine while disabled.
// The block's other keys are DeepSpeed's business; ucp does not read them.
absl::Status RequireDisabled(StrictObject& root, absl::string_view key, absl::string_view what) {
  const JsonField field = root.Get(key);
  const nlohmann::json* block = nullptr;
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, field, &block));
  if (block == nullptr) return absl::OkStatus();
  bool enabled = false;
  StrictObject inner(*block, kWhat, field.path);
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, inner.Get("enabled"), &enabled));
  if (enabled) return NotImplemented(absl::StrCat(field.path, ".enabled"), what);
  return absl::OkStatus();
}

absl::Status ParseBatch(StrictObject& root, int world, TrainConfig& c) {
  if (world < 1) return Invalid(absl::StrCat("world size ", world, " must be positive"));
  std::optional<int64_t> train, micro, gas;
  for (auto [key, slot] :
       {std::pair{"train_batch_size", &train}, std::pair{"train_micro_batch_size_per_gpu", &micro},
        std::pair{"gradient_accumulation_steps", &gas}}) {
    const JsonField field = root.Get(key);
    if (!field.present()) continue;
    int64_t value = 0;
    UCP_RETURN_IF_ERROR(ReadInt(kWhat, field, &value));
    if (value <= 0) return Invalid(absl::StrCat("`", key, "` must be positive, got ", value));
    *slot = value;
  }
  // DeepSpeed's _set_batch_related_parameters: derive what is missing (floor divisions), then
  // assert the three-way rule below.
  if (train && micro && !gas) {
    gas = *train / *micro / world;
  } else if (train && gas && !micro) {
    micro = *train / world / *gas;
  } else if (micro && gas && !train) {
    train = *micro * *gas * world;
  } else if (train && !micro && !gas) {
    gas = 1;
    micro = *train / world;
  } else if (micro && !train && !gas) {
    gas = 1;
    train = *micro * world;
  } else if (!train && !micro) {
    return Invalid("either `train_batch_size` or `train_micro_batch_size_per_gpu` must be given");
  }
  int64_t product = 0;
  const bool overflow = __builtin_mul_overflow(*micro, *gas, &product) ||
                        __builtin_mul_overflow(product, static_cast<int64_t>(world), &product);
  if (*micro <= 0 || *gas <= 0 || overflow || product != *train) {
    return Invalid(absl::StrCat("batch sizes are inconsistent: train_batch_size ", *train,
                                " must equal train_micro_batch_size_per_gpu ", *micro,
                                " * gradient_accumulation_steps ", *gas,
                                " * data-parallel world size ", world));
  }
  c.train_batch_size = *train;
  c.micro_batch_per_gpu = *micro;
  c.gradient_accumulation_steps = *gas;
  return absl::OkStatus();
}

absl::Status ParseOptimizer(const JsonField& field, TrainConfig& c) {
  const nlohmann::json* block = nullptr;
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, field, &block));
  if (block == nullptr) return absl::OkStatus();
  StrictObject opt(*block, kWhat, field.path);
  AdamConfig& a = c.optimizer;
  const JsonField type = opt.Get("type");
  if (!type.present()) return Invalid("`optimizer.type` is required when `optimizer` is given");
  UCP_RETURN_IF_ERROR(ReadString(kWhat, type, &a.type));
  const std::string lower = absl::AsciiStrToLower(a.type);
  if (lower != "adam" && lower != "adamw") {
    return Invalid(absl::StrCat("optimizer.type \"", a.type,
                                "\" is not supported by ucp train (supported: Adam, AdamW)"));
  }
  bool legacy_fusion = false;
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, opt.Get("legacy_fusion"), &legacy_fusion));
  const nlohmann::json* params = nullptr;
  const JsonField params_field = opt.Get("params");
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, params_field, &params));
  UCP_RETURN_IF_ERROR(opt.Finish());
  c.has_optimizer = true;
  if (params == nullptr) return absl::OkStatus();

  StrictObject p(*params, kWhat, params_field.path);
  if (const JsonField max_norm = p.Get("max_grad_norm"); max_norm.present()) {
    return Invalid(
        "`optimizer.params.max_grad_norm` is not supported: use the top-level "
        "`gradient_clipping`");
  }
  UCP_RETURN_IF_ERROR(ReadDouble(kWhat, p.Get("lr"), &a.lr));
  if (const JsonField betas = p.Get("betas"); betas.present()) {
    if (!betas.value->is_array() || betas.value->size() != 2 || !(*betas.value)[0].is_number() ||
        !(*betas.value)[1].is_number()) {
      return Invalid(absl::StrCat("`", betas.path, "` must be an array of two numbers, got ",
                                  DescribeJson(*betas.value)));
    }
    a.beta1 = (*betas.value)[0].get<double>();
    a.beta2 = (*betas.value)[1].get<double>();
  }
  UCP_RETURN_IF_ERROR(ReadDouble(kWhat, p.Get("eps"), &a.eps));
  UCP_RETURN_IF_ERROR(ReadDouble(kWhat, p.Get("weight_decay"), &a.weight_decay));
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, p.Get("bias_correction"), &a.bias_correction));
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, p.Get("adam_w_mode"), &a.adam_w_mode));
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, p.Get("torch_adam"), &a.torch_adam));
  if (lower == "adamw") a.adam_w_mode = true;  // DeepSpeed forces decoupled decay for AdamW
  bool flag = false;
  for (const char* key : {"amsgrad", "maximize"}) {
    const JsonField f = p.Get(key);
    UCP_RETURN_IF_ERROR(ReadBool(kWhat, f, &flag));
    if (flag) return NotImplemented(f.path, "true");
  }
  p.Known({"set_grad_none", "foreach", "fused", "capturable", "differentiable"});
  UCP_RETURN_IF_ERROR(p.Finish());
  if (!(a.lr >= 0) || !(a.eps > 0) || !(a.weight_decay >= 0) || !(a.beta1 >= 0 && a.beta1 < 1) ||
      !(a.beta2 >= 0 && a.beta2 < 1)) {
    return Invalid(absl::StrCat("`optimizer.params` out of range: lr ", a.lr, ", betas [", a.beta1,
                                ", ", a.beta2, "], eps ", a.eps, ", weight_decay ",
                                a.weight_decay));
  }
  return absl::OkStatus();
}

absl::Status ParseScheduler(const JsonField& field, TrainConfig& c) {
  const nlohmann::json* block = nullptr;
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, field, &block));
  if (block == nullptr) return absl::OkStatus();
  StrictObject sched(*block, kWhat, field.path);
  SchedulerConfig& s = c.scheduler;
  const JsonField type = sched.Get("type");
  UCP_RETURN_IF_ERROR(ReadString(kWhat, type, &s.type));
  const nlohmann::json* params = nullptr;
  const JsonField params_field = sched.Get("params");
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, params_field, &params));
  UCP_RETURN_IF_ERROR(sched.Finish());
  if (s.type.empty()) {
    if (params != nullptr && !params->empty()) {
      return Invalid("`scheduler.params` is given without `scheduler.type`");
    }
    return absl::OkStatus();
  }
  const bool cosine = s.type == "WarmupCosineLR";
  const bool decay = s.type == "WarmupDecayLR";
  if (!cosine && !decay && s.type != "WarmupLR") {
    return NotImplemented("scheduler.type", absl::StrCat("\"", s.type,
                                                         "\"; supported: WarmupLR, WarmupDecayLR, "
                                                         "WarmupCosineLR"));
  }
  static const nlohmann::json kEmpty = nlohmann::json::object();
  StrictObject p(params ? *params : kEmpty, kWhat, params_field.path);
  if (cosine) {
    UCP_RETURN_IF_ERROR(ReadDouble(kWhat, p.Get("warmup_min_ratio"), &s.warmup_min_ratio));
    UCP_RETURN_IF_ERROR(ReadDouble(kWhat, p.Get("cos_min_ratio"), &s.cos_min_ratio));
  } else {
    // Per-group lists exist in DeepSpeed; ucp keeps one value for every group.
    for (const char* key : {"warmup_min_lr", "warmup_max_lr"}) {
      const JsonField f = p.Get(key);
      if (f.present() && f.value->is_array()) return NotImplemented(f.path, "a per-group list");
    }
    UCP_RETURN_IF_ERROR(ReadDouble(kWhat, p.Get("warmup_min_lr"), &s.warmup_min_lr));
    if (const JsonField max_lr = p.Get("warmup_max_lr"); max_lr.present()) {
      double value = 0;
      UCP_RETURN_IF_ERROR(ReadDouble(kWhat, max_lr, &value));
      s.warmup_max_lr = value;
    } else if (decay) {
      s.warmup_max_lr = 0.001;  // WarmupDecayLR's constructor default (not the optimizer lr)
    }
  }
  const JsonField steps = p.Get("warmup_num_steps");
  UCP_RETURN_IF_ERROR(ReadInt(kWhat, steps, &s.warmup_num_steps));
  if (s.warmup_num_steps <= 0) {
    return Invalid(
        absl::StrCat("`", steps.path, "` must be a positive integer, got ", s.warmup_num_steps));
  }
  const JsonField warmup_type = p.Get("warmup_type");
  UCP_RETURN_IF_ERROR(ReadString(kWhat, warmup_type, &s.warmup_type));
  // DeepSpeed warns and falls back to log; a typo here would silently change the schedule.
  if (s.warmup_type != "log" && s.warmup_type != "linear") {
    return Invalid(absl::StrCat("`", warmup_type.path, "` must be \"log\" or \"linear\", got \"",
                                s.warmup_type, "\""));
  }
  if (cosine || decay) {
    const JsonField total = p.Get("total_num_steps");
    if (!total.present()) {
      return Invalid(absl::StrCat("`", total.path, "` is required by ", s.type));
    }
    UCP_RETURN_IF_ERROR(ReadInt(kWhat, total, &s.total_num_steps));
    if (s.total_num_steps <= 0) {
      return Invalid(absl::StrCat("`", total.path, "` must be positive, got ", s.total_num_steps));
    }
  }
  if (const JsonField last = p.Get("last_batch_iteration"); last.present()) {
    int64_t value = -1;
    UCP_RETURN_IF_ERROR(ReadInt(kWhat, last, &value));
    if (value != -1) return NotImplemented(last.path, "a value other than -1");
  }
  return p.Finish();
}

absl::Status ParseFp16(const JsonField& field, TrainConfig& c, bool* enabled) {
  const nlohmann::json* block = nullptr;
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, field, &block));
  if (block == nullptr) return absl::OkStatus();
  StrictObject f(*block, kWhat, field.path);
  LossScaleConfig& l = c.loss_scale;
  double loss_scale = 0;
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, f.Get("enabled"), enabled));
  UCP_RETURN_IF_ERROR(ReadDouble(kWhat, f.Get("loss_scale"), &loss_scale));
  UCP_RETURN_IF_ERROR(ReadInt(kWhat, f.Get("initial_scale_power"), &l.initial_scale_power));
  UCP_RETURN_IF_ERROR(ReadInt(kWhat, f.Get("loss_scale_window"), &l.loss_scale_window));
  UCP_RETURN_IF_ERROR(ReadInt(kWhat, f.Get("hysteresis"), &l.hysteresis));
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, f.Get("consecutive_hysteresis"), &l.consecutive_hysteresis));
  UCP_RETURN_IF_ERROR(ReadDouble(kWhat, f.Get("min_loss_scale"), &l.min_loss_scale));
  for (const char* key : {"auto_cast", "fp16_master_weights_and_grads"}) {
    bool on = false;
    const JsonField flag = f.Get(key);
    UCP_RETURN_IF_ERROR(ReadBool(kWhat, flag, &on));
    if (on) return NotImplemented(flag.path, "true");
  }
  UCP_RETURN_IF_ERROR(f.Finish());
  if (loss_scale < 0 || l.initial_scale_power < 0 || l.initial_scale_power > 126 ||
      l.loss_scale_window <= 0 || l.hysteresis <= 0 || !(l.min_loss_scale > 0)) {
    return Invalid("`fp16` loss-scale settings out of range");
  }
  if (*enabled) {
    l.dynamic = loss_scale == 0;
    l.static_scale = l.dynamic ? 1.0 : loss_scale;
  }
  return absl::OkStatus();
}

absl::Status ParseBf16(StrictObject& root, TrainConfig& c, bool* enabled) {
  const JsonField field = root.Get("bf16", "bfloat16");
  const nlohmann::json* block = nullptr;
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, field, &block));
  if (block == nullptr) return absl::OkStatus();
  StrictObject b(*block, kWhat, field.path);
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, b.Get("enabled"), enabled));
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, b.Get("check_grad_overflow"), &c.bf16_check_grad_overflow));
  for (const char* key :
       {"immediate_grad_update", "bf16_master_weights_and_grads", "bf16_optimizer_states"}) {
    bool on = false;
    const JsonField flag = b.Get(key);
    UCP_RETURN_IF_ERROR(ReadBool(kWhat, flag, &on));
    if (on) return NotImplemented(flag.path, "true");
  }
  return b.Finish();
}

absl::Status ParseDataTypes(const JsonField& field, TrainConfig& c) {
  const nlohmann::json* block = nullptr;
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, field, &block));
  if (block == nullptr) return absl::OkStatus();
  StrictObject d(*block, kWhat, field.path);
  if (const JsonField f = d.Get("grad_accum_dtype"); f.present()) {
    UCP_ASSIGN_OR_RETURN(c.grad_accum_dtype, PrecisionFromName(f));
  }
  if (const JsonField f = d.Get("param_dtype"); f.present()) {
    UCP_ASSIGN_OR_RETURN(Precision param, PrecisionFromName(f));
    if (param != c.precision) {
      return Invalid(absl::StrCat("`", f.path, "` ", PrecisionName(param),
                                  " conflicts with the precision set by `fp16.enabled` / "
                                  "`bf16.enabled` (",
                                  PrecisionName(c.precision), ")"));
    }
  }
  if (const JsonField f = d.Get("buffer_dtype"); f.present()) {
    UCP_ASSIGN_OR_RETURN(Precision buffer, PrecisionFromName(f));
    (void)buffer;  // buffers are cast, not trained: no effect on the optimizer numerics
  }
  return d.Finish();
}

absl::Status ParseCheckpoint(const JsonField& field, TrainConfig& c) {
  const nlohmann::json* block = nullptr;
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, field, &block));
  if (block == nullptr) return absl::OkStatus();
  StrictObject k(*block, kWhat, field.path);
  const JsonField tag = k.Get("tag_validation");
  std::string mode = c.tag_validation;
  UCP_RETURN_IF_ERROR(ReadString(kWhat, tag, &mode));
  const std::string upper = absl::AsciiStrToUpper(mode);  // DeepSpeed upper-cases it too
  if (upper == "IGNORE") {
    c.tag_validation = "Ignore";
  } else if (upper == "WARN") {
    c.tag_validation = "Warn";
  } else if (upper == "FAIL") {
    c.tag_validation = "Fail";
  } else {
    return Invalid(
        absl::StrCat("`", tag.path, "` must be Ignore, Warn or Fail, got \"", mode, "\""));
  }
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, k.Get("load_universal"), &c.load_universal));
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, k.Get("use_node_local_storage"), &c.use_node_local_storage));
  bool serialization = true;
  const JsonField ser = k.Get("checkpoint_serialization");
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, ser, &serialization));
  if (!serialization) return NotImplemented(ser.path, "false: the legacy torch.save format");
  k.Known({"parallel_write", "writer"});  // how files are written, not what they hold
  return k.Finish();
}

// activation_checkpointing (§3.8, §5): DeepSpeed's block configures the checkpoint() its model
// code calls; ucp train has no such calls to configure and checkpoints every unit itself, so the
// block (even empty) turns that on. Its knobs that change what is kept or where are refused.
absl::Status ParseActivationCheckpointing(const JsonField& field, TrainConfig& c) {
  const nlohmann::json* block = nullptr;
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, field, &block));
  if (block == nullptr) return absl::OkStatus();
  c.activation_checkpointing = true;
  StrictObject a(*block, kWhat, field.path);
  for (auto [key, what] :
       {std::pair{"partition_activations", "true: activations split over model-parallel ranks"},
        std::pair{"cpu_checkpointing", "true: checkpoints moved to host memory"},
        std::pair{"contiguous_memory_optimization", "true: checkpoints in one preallocated buffer"},
        std::pair{"profile", "true: timing of checkpointed forwards and backwards"}}) {
    bool on = false;
    const JsonField f = a.Get(key);
    UCP_RETURN_IF_ERROR(ReadBool(kWhat, f, &on));
    if (on) return NotImplemented(f.path, what);
  }
  if (const JsonField f = a.Get("number_checkpoints"); f.present()) {
    int64_t n = 0;
    UCP_RETURN_IF_ERROR(ReadInt(kWhat, f, &n));
    return NotImplemented(f.path, "set: the contiguous buffer's size");
  }
  // A device synchronize at each checkpoint boundary: a CPU rank has no queue to drain.
  bool sync = false;
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, a.Get("synchronize_checkpoint_boundary"), &sync));
  return a.Finish();
}

absl::Status ParseCsvMonitor(const JsonField& field, TrainConfig& c) {
  const nlohmann::json* block = nullptr;
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, field, &block));
  if (block == nullptr) return absl::OkStatus();
  StrictObject m(*block, kWhat, field.path);
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, m.Get("enabled"), &c.csv_monitor.enabled));
  UCP_RETURN_IF_ERROR(ReadString(kWhat, m.Get("output_path"), &c.csv_monitor.output_path));
  UCP_RETURN_IF_ERROR(ReadString(kWhat, m.Get("job_name"), &c.csv_monitor.job_name));
  return m.Finish();
}

}  // namespace

const char* PrecisionName(Precision precision) {
  switch (precision) {
    case Precision::kFp32: return "fp32";
    case Precision::kBf16: return "bf16";
    case Precision::kFp16: return "fp16";
  }
  return "?";
}

bool TrainConfig::bf16_optimizer() const {
  return precision == Precision::kBf16 && grad_accum_dtype == Precision::kFp32 && zero.stage == 1;
}

absl::StatusOr<TrainConfig> ParseTrainConfig(const nlohmann::json& config, int world) {
  if (!config.is_object()) {
    return Invalid(absl::StrCat("the config must be a JSON object, got ", DescribeJson(config)));
  }
  TrainConfig c;
  c.raw = config;
  StrictObject root(config, kWhat, "");
  UCP_RETURN_IF_ERROR(ParseParallelism(root, world, c));
  UCP_RETURN_IF_ERROR(ParseBatch(root, world / c.autotp_size / c.sp_size, c));
  UCP_RETURN_IF_ERROR(ReadInt(kWhat, root.Get("steps_per_print"), &c.steps_per_print));
  if (c.steps_per_print < 0) return Invalid("`steps_per_print` must not be negative");
  UCP_RETURN_IF_ERROR(ParseOptimizer(root.Get("optimizer"), c));
  UCP_RETURN_IF_ERROR(ParseScheduler(root.Get("scheduler"), c));

  bool fp16 = false, bf16 = false;
  UCP_RETURN_IF_ERROR(ParseFp16(root.Get("fp16"), c, &fp16));
  UCP_RETURN_IF_ERROR(ParseBf16(root, c, &bf16));
  if (fp16 && bf16) return Invalid("`fp16.enabled` and `bf16.enabled` cannot both be true");
  c.precision = fp16 ? Precision::kFp16 : bf16 ? Precision::kBf16 : Precision::kFp32;
  UCP_RETURN_IF_ERROR(ParseDataTypes(root.Get("data_types"), c));
  if (const JsonField f = root.Get("communication_data_type"); f.present()) {
    std::string name;
    UCP_RETURN_IF_ERROR(ReadString(kWhat, f, &name));
    name = absl::AsciiStrToLower(name);  // DeepSpeed lower-cases, then takes fp32/fp16/bf16 only
    if (name != "fp32" && name != "fp16" && name != "bf16") {
      return Invalid(
          absl::StrCat("`communication_data_type` must be fp32, fp16 or bf16, got \"", name, "\""));
    }
    c.communication_data_type = name == "fp32"   ? Precision::kFp32
                                : name == "fp16" ? Precision::kFp16
                                                 : Precision::kBf16;
  }

  const JsonField clip = root.Get("gradient_clipping");
  UCP_RETURN_IF_ERROR(ReadDouble(kWhat, clip, &c.gradient_clipping));
  if (!(c.gradient_clipping >= 0)) return Invalid("`gradient_clipping` must not be negative");
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, root.Get("prescale_gradients"), &c.prescale_gradients));
  UCP_RETURN_IF_ERROR(
      ReadDouble(kWhat, root.Get("gradient_predivide_factor"), &c.gradient_predivide_factor));
  if (!(c.gradient_predivide_factor > 0)) {
    return Invalid("`gradient_predivide_factor` must be positive");
  }
  std::string allreduce_op = "mean";
  const JsonField op = root.Get("gradient_allreduce_op");
  UCP_RETURN_IF_ERROR(ReadString(kWhat, op, &allreduce_op));
  if (allreduce_op != "mean" && allreduce_op != "sum") {
    return Invalid(absl::StrCat("`gradient_allreduce_op` must be \"mean\" or \"sum\", got \"",
                                allreduce_op, "\""));
  }

  UCP_RETURN_IF_ERROR(ParseZeroOptimization(root, c));
  UCP_RETURN_IF_ERROR(ValidateAutoEpTopology(c.expert_parallel, world, c.zero.stage,
                                             c.use_data_before_expert_parallelism));
  UCP_RETURN_IF_ERROR(ParseCheckpoint(root.Get("checkpoint"), c));
  UCP_RETURN_IF_ERROR(ParseCsvMonitor(root.Get("csv_monitor"), c));
  UCP_RETURN_IF_ERROR(ParseActivationCheckpointing(root.Get("activation_checkpointing"), c));
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, root.Get("wall_clock_breakdown"), &c.wall_clock_breakdown));

  // Switches whose effect ucp does not implement, harmless while off.
  for (auto [key, what] :
       {std::pair{"tensorboard", "TensorBoard monitor; use csv_monitor"},
        std::pair{"wandb", "W&B monitor; use csv_monitor"},
        std::pair{"comet", "Comet monitor; use csv_monitor"}, std::pair{"amp", "Apex AMP"},
        std::pair{"torch_autocast", "torch autocast"},
        std::pair{"elasticity", "elastic batch sizes"},
        std::pair{"curriculum_learning", "curriculum learning"},
        std::pair{"progressive_layer_drop", "progressive layer drop"},
        std::pair{"eigenvalue", "eigenvalue computation"},
        std::pair{"quantize_training", "quantized training"},
        std::pair{"hybrid_engine", "hybrid engine"}}) {
    UCP_RETURN_IF_ERROR(RequireDisabled(root, key, what));
  }
  for (const char* key : {"sparse_attention", "compression_training", "data_efficiency"}) {
    const JsonField f = root.Get(key);
    if (f.present() && !(f.value->is_object() && f.value->empty())) {
      return NotImplemented(f.path, "present");
    }
  }
  bool flag = false;
  if (const JsonField f = root.Get("sparse_gradients"); f.present()) {
    UCP_RETURN_IF_ERROR(ReadBool(kWhat, f, &flag));
    if (flag) return NotImplemented(f.path, "true");
  }
  flag = true;
  if (const JsonField f = root.Get("managed_gradient_accumulation"); f.present()) {
    UCP_RETURN_IF_ERROR(ReadBool(kWhat, f, &flag));
    if (!flag) return NotImplemented(f.path, "false");
  }
  // Accepted and ignored: logging, profiling and bookkeeping knobs without effect on the numbers.
  root.Known({"memory_breakdown", "zero_allow_untested_optimizer", "zero_force_ds_cpu_optimizer",
              "dataloader_drop_last", "flops_profiler", "comms_logger", "disable_allgather",
              "dump_state", "log_level", "vocabulary_size", "graph_harvesting", "autotuning",
              "timers", "aio", "pipeline", "seq_parallel_communication_data_type"});
  UCP_RETURN_IF_ERROR(root.Finish());

  // Contradictions DeepSpeed rejects (config.py _do_error_check, engine and ZeRO asserts).
  if (allreduce_op == "sum") {
    if (c.zero.stage == 3) {
      return Invalid(
          "`gradient_allreduce_op` \"sum\" is not supported with "
          "`zero_optimization.stage` 3");
    }
    return NotImplemented(op.path, "\"sum\"");
  }
  if (c.zero.stage == 2 && c.zero.reduce_scatter) {
    if (c.gradient_predivide_factor != 1.0) {
      return Invalid(
          "`gradient_predivide_factor` must be 1.0 with `zero_optimization.stage` 2 "
          "and `zero_optimization.reduce_scatter`");
    }
    if (c.prescale_gradients) {
      return Invalid(
          "`prescale_gradients` is not supported with `zero_optimization.stage` 2 "
          "and `zero_optimization.reduce_scatter`");
    }
  }
  if (c.zero.stage == 0 && c.EffectiveGradAccumDtype() != c.precision) {
    return Invalid(
        absl::StrCat("`data_types.grad_accum_dtype` ", PrecisionName(*c.grad_accum_dtype),
                     " differs from the model dtype ", PrecisionName(c.precision),
                     ", which DeepSpeed supports only with `zero_optimization.stage` >= 1"));
  }
  return c;
}

absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path, int world) {
  UCP_ASSIGN_OR_RETURN(nlohmann::json config, ReadJsonFile(path, "ds_config"));
  absl::StatusOr<TrainConfig> parsed = ParseTrainConfig(config, world);
  if (!parsed.ok()) return WithContext(parsed.status(), path);
  return parsed;
}

}  // namespace ucp::runtime
