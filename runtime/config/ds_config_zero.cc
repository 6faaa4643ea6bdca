// zero_optimization and the parallelism blocks of the DeepSpeed config (ds_config.h).
#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/base/status.h"
#include "runtime/config/ds_config_internal.h"

namespace ucp::runtime::internal_ds_config {
namespace {

absl::Status ReadFlagOff(StrictObject& object, absl::string_view key) {
  bool on = false;
  const JsonField field = object.Get(key);
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, field, &on));
  return on ? NotImplemented(field.path, "true") : absl::OkStatus();
}

absl::Status ReadNonNegative(const JsonField& field, int64_t* out) {
  UCP_RETURN_IF_ERROR(ReadInt(kWhat, field, out));
  if (*out < 0) return Invalid(absl::StrCat("`", field.path, "` must not be negative, got ", *out));
  return absl::OkStatus();
}

// offload_optimizer / offload_param: fine while the device is "none".
absl::Status ParseOffload(StrictObject& zero, absl::string_view key, bool optimizer) {
  const JsonField field = zero.Get(key);
  const nlohmann::json* block = nullptr;
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, field, &block));
  if (block == nullptr) return absl::OkStatus();
  StrictObject o(*block, kWhat, field.path);
  const JsonField device_field = o.Get("device");
  std::string device = "none";
  UCP_RETURN_IF_ERROR(ReadString(kWhat, device_field, &device));
  o.Known({"nvme_path", "buffer_count", "pin_memory"});
  if (optimizer) {
    o.Known({"pipeline_read", "pipeline_write", "fast_init", "ratio", "super_offload",
             "cpuadam_cores_perc", "pipeline"});
  } else {
    o.Known({"buffer_size", "max_in_cpu"});
  }
  UCP_RETURN_IF_ERROR(o.Finish());
  if (device == "none") return absl::OkStatus();
  if (device == "cpu" || device == "nvme") {
    return NotImplemented(device_field.path, absl::StrCat("\"", device, "\""));
  }
  return Invalid(
      absl::StrCat("`", device_field.path, "` must be none, cpu or nvme, got \"", device, "\""));
}

absl::Status ParseZeroBlock(const nlohmann::json& block, const std::string& path, ZeroConfig& z) {
  StrictObject o(block, kWhat, path);
  const JsonField stage = o.Get("stage");
  UCP_RETURN_IF_ERROR(ReadInt(kWhat, stage, &z.stage));
  if (z.stage < 0 || z.stage > 3) {
    return Invalid(absl::StrCat("`", stage.path, "` must be 0, 1, 2 or 3, got ", z.stage));
  }
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, o.Get("contiguous_gradients"), &z.contiguous_gradients));
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, o.Get("reduce_scatter"), &z.reduce_scatter));
  UCP_RETURN_IF_ERROR(ReadNonNegative(o.Get("reduce_bucket_size"), &z.reduce_bucket_size));
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, o.Get("use_multi_rank_bucket_allreduce"),
                               &z.use_multi_rank_bucket_allreduce));
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, o.Get("allgather_partitions"), &z.allgather_partitions));
  UCP_RETURN_IF_ERROR(ReadNonNegative(o.Get("allgather_bucket_size"), &z.allgather_bucket_size));
  z.overlap_comm = z.stage == 3;  // DeepSpeed's null default
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, o.Get("overlap_comm"), &z.overlap_comm));
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, o.Get("load_from_fp32_weights"), &z.load_from_fp32_weights));
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, o.Get("round_robin_gradients"), &z.round_robin_gradients));
  UCP_RETURN_IF_ERROR(ReadNonNegative(o.Get("sub_group_size"), &z.sub_group_size));
  UCP_RETURN_IF_ERROR(ReadNonNegative(o.Get("prefetch_bucket_size", "stage3_prefetch_bucket_size"),
                                      &z.prefetch_bucket_size));
  UCP_RETURN_IF_ERROR(
      ReadNonNegative(o.Get("param_persistence_threshold", "stage3_param_persistence_threshold"),
                      &z.param_persistence_threshold));
  UCP_RETURN_IF_ERROR(
      ReadNonNegative(o.Get("model_persistence_threshold", "stage3_model_persistence_threshold"),
                      &z.model_persistence_threshold));
  UCP_RETURN_IF_ERROR(ReadNonNegative(o.Get("max_live_parameters", "stage3_max_live_parameters"),
                                      &z.max_live_parameters));
  UCP_RETURN_IF_ERROR(ReadNonNegative(o.Get("max_reuse_distance", "stage3_max_reuse_distance"),
                                      &z.max_reuse_distance));
  UCP_RETURN_IF_ERROR(ReadBool(
      kWhat,
      o.Get("gather_16bit_weights_on_model_save", "stage3_gather_16bit_weights_on_model_save"),
      &z.gather_16bit_weights_on_model_save));
  bool gather_fp16 = false;  // deprecated name of the same switch
  UCP_RETURN_IF_ERROR(
      ReadBool(kWhat, o.Get("stage3_gather_fp16_weights_on_model_save"), &gather_fp16));
  z.gather_16bit_weights_on_model_save |= gather_fp16;
  UCP_RETURN_IF_ERROR(
      ReadBool(kWhat, o.Get("ignore_unused_parameters"), &z.ignore_unused_parameters));

  UCP_RETURN_IF_ERROR(ParseOffload(o, "offload_optimizer", /*optimizer=*/true));
  UCP_RETURN_IF_ERROR(ParseOffload(o, "offload_param", /*optimizer=*/false));
  for (const char* key : {"cpu_offload", "cpu_offload_param", "zero_quantized_weights",
                          "zero_quantized_nontrainable_weights", "zero_quantized_gradients"}) {
    UCP_RETURN_IF_ERROR(ReadFlagOff(o, key));
  }
  bool legacy_stage1 = false;
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, o.Get("legacy_stage1"), &legacy_stage1));
  if (legacy_stage1) return Invalid("`zero_optimization.legacy_stage1` is no longer supported");
  int64_t hpz = 1, mics = -1;
  const JsonField hpz_field = o.Get("zero_hpz_partition_size");
  UCP_RETURN_IF_ERROR(ReadInt(kWhat, hpz_field, &hpz));
  if (hpz > 1) return NotImplemented(hpz_field.path, absl::StrCat(hpz, " > 1: hpZeRO"));
  const JsonField mics_field = o.Get("mics_shard_size");
  UCP_RETURN_IF_ERROR(ReadInt(kWhat, mics_field, &mics));
  if (mics > 0) return NotImplemented(mics_field.path, absl::StrCat(mics, " > 0: MiCS"));
  for (const char* key : {"zeropp_loco_param", "zenflow"}) {
    if (const JsonField f = o.Get(key); f.present()) return NotImplemented(f.path, "set");
  }
  // Memory, tracing and checkpoint-loading knobs: no effect on the numbers.
  o.Get("module_granularity_threshold", "stage3_module_granularity_threshold");
  o.Get("use_all_reduce_for_fetch_params", "stage3_use_all_reduce_for_fetch_params");
  o.Get("allgather_sequential", "stage3_allgather_sequential");
  o.Known({"elastic_checkpoint", "cpu_offload_use_pin_memory", "mics_hierarchical_params_gather",
           "memory_efficient_linear", "override_module_apply", "pipeline_loading_checkpoint",
           "log_trace_cache_warnings", "enable_sanity_checks",
           "save_muon_momentum_buffer_in_memory", "leaf_module"});
  return o.Finish();
}

}  // namespace

absl::Status ParseZeroOptimization(StrictObject& root, TrainConfig& c) {
  const JsonField field = root.Get("zero_optimization");
  if (field.present() && field.value->is_boolean()) {
    // Deprecated form: true = stage 1, with the top-level allgather_size.
    c.zero.stage = field.value->get<bool>() ? 1 : 0;
    if (c.zero.stage == 1) {
      UCP_RETURN_IF_ERROR(
          ReadNonNegative(root.Get("allgather_size"), &c.zero.allgather_bucket_size));
    }
    return absl::OkStatus();
  }
  const nlohmann::json* block = nullptr;
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, field, &block));
  static const nlohmann::json kEmpty = nlohmann::json::object();
  return ParseZeroBlock(block ? *block : kEmpty, "zero_optimization", c.zero);
}

absl::Status ParseParallelism(StrictObject& root, int world, TrainConfig& c) {
  const JsonField sp = root.Get("sequence_parallel_size");
  int64_t sp_size = 1;
  UCP_RETURN_IF_ERROR(ReadInt(kWhat, sp, &sp_size));
  if (sp_size < 1) return Invalid(absl::StrCat("`sequence_parallel_size` must be >= 1"));
  c.sp_size = static_cast<int>(sp_size);
  if (world % c.sp_size != 0) {
    return Invalid(absl::StrCat("`sequence_parallel_size` ", sp_size,
                                " does not divide the world size ", world));
  }

  const JsonField tp = root.Get("tensor_parallel");
  const nlohmann::json* block = nullptr;
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, tp, &block));
  if (block != nullptr) {
    StrictObject t(*block, kWhat, tp.path);
    int64_t autotp = 0;
    const JsonField autotp_field = t.Get("autotp_size");
    UCP_RETURN_IF_ERROR(ReadInt(kWhat, autotp_field, &autotp));
    if (autotp < 0) return Invalid(absl::StrCat("`", autotp_field.path, "` must be >= 0"));
    c.autotp_size = static_cast<int>(std::max<int64_t>(1, autotp));
    if (world % c.autotp_size != 0) {
      return Invalid(absl::StrCat("`", autotp_field.path, "` ", autotp,
                                  " does not divide the world size ", world));
    }
    if (world % (c.autotp_size * c.sp_size) != 0) {
      return Invalid(absl::StrCat("`", autotp_field.path, "` ", autotp,
                                  " x `sequence_parallel_size` ", c.sp_size,
                                  " does not divide the world size ", world));
    }
    // Config-driven partitioning (§2.2: before the model's tp_plan), resolved against the model
    // by runtime/config/tp_partition.h.
    const JsonField preset = t.Get("preset_model");
    UCP_RETURN_IF_ERROR(ReadString(kWhat, preset, &c.tp_partition.preset_model));
    if (preset.present()) {
      const std::vector<std::string>& names = TpPresetNames();
      const std::string lower = absl::AsciiStrToLower(c.tp_partition.preset_model);
      if (std::find(names.begin(), names.end(), lower) == names.end()) {
        const std::string near = NearestKey(lower, names);
        return Invalid(
            absl::StrCat("`", preset.path, "`: unknown preset \"", c.tp_partition.preset_model,
                         "\" (", near.empty() ? "" : absl::StrCat("did you mean \"", near, "\"? "),
                         "presets: ", absl::StrJoin(names, ", "), ")"));
      }
    }
    const JsonField pc = t.Get("partition_config");
    if (pc.present()) {
      UCP_ASSIGN_OR_RETURN(c.tp_partition.partition_config,
                           ParseTpPartitionConfig(*pc.value, pc.path));
    }
    // tp.tp_size must equal autotp_size or 1 (_apply_autotp_partitioning).
    const JsonField tp_sub = t.Get("tp", "tensor_parallel");
    const nlohmann::json* sub = nullptr;
    UCP_RETURN_IF_ERROR(ReadObject(kWhat, tp_sub, &sub));
    if (sub != nullptr) {
      StrictObject s(*sub, kWhat, tp_sub.path);
      const JsonField size = s.Get("tp_size");
      int64_t tp_size = 1;
      UCP_RETURN_IF_ERROR(ReadInt(kWhat, size, &tp_size));
      if (tp_size != 1 && tp_size != c.autotp_size)
        return Invalid(absl::StrCat("`", size.path, "` (", tp_size, ") does not match `",
                                    autotp_field.path, "` (", autotp, ")"));
      const JsonField grain = s.Get("tp_grain_size");
      int64_t grain_size = 1;
      UCP_RETURN_IF_ERROR(ReadInt(kWhat, grain, &grain_size));
      if (grain_size != 1)
        return NotImplemented(grain.path,
                              absl::StrCat(grain_size, " (training splits with grain 1)"));
      s.Known({"mpu", "tp_group"});
      UCP_RETURN_IF_ERROR(s.Finish());
    }
    bool overlap = false;  // an overlap of communication, same numbers
    UCP_RETURN_IF_ERROR(ReadBool(kWhat, t.Get("tp_overlap_comm"), &overlap));
    t.Known({"keep_module_on_host", "dtype", "injection_policy_tuple", "replace_with_kernel_inject",
             "kernel_inject"});
    UCP_RETURN_IF_ERROR(t.Finish());
  }

  const JsonField dp = root.Get("data_parallel_size");
  if (dp.present()) {
    int64_t dp_size = 0;
    UCP_RETURN_IF_ERROR(ReadInt(kWhat, dp, &dp_size));
    if (dp_size != world / c.autotp_size / c.sp_size) {
      return Invalid(absl::StrCat("`data_parallel_size` ", dp_size,
                                  " does not match the data-parallel world size ",
                                  world / c.autotp_size / c.sp_size));
    }
  }

  const JsonField ep = root.Get("expert_parallel");
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, ep, &block));
  if (block != nullptr) {
    UCP_ASSIGN_OR_RETURN(c.expert_parallel, ParseAutoEpConfig(*block, ep.path));
  }
  UCP_RETURN_IF_ERROR(ReadBool(kWhat, root.Get("use_data_before_expert_parallelism"),
                               &c.use_data_before_expert_parallelism));

  // compile's sub-keys are an open list in DeepSpeed; only the switch matters here.
  const JsonField compile = root.Get("compile");
  UCP_RETURN_IF_ERROR(ReadObject(kWhat, compile, &block));
  if (block != nullptr) {
    StrictObject k(*block, kWhat, compile.path);
    return ReadFlagOff(k, "deepcompile");
  }
  return absl::OkStatus();
}

}  // namespace ucp::runtime::internal_ds_config
