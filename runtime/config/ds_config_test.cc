#include "runtime/config/ds_config.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::runtime {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using json = nlohmann::json;

std::string SourceDir() {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return root != nullptr ? root : ".";
}

json FixtureDsConfig(const std::string& name) {
  std::ifstream in(absl::StrCat(SourceDir(), "/fixtures/deepspeed/", name, "/manifest.json"));
  EXPECT_TRUE(in.good()) << name;
  return json::parse(in)["ds_config"];
}

json Minimal() { return json{{"train_batch_size", 8}}; }

json With(json config, const json& patch) {
  config.merge_patch(patch);
  return config;
}

absl::Status ErrorOf(const json& config, int world = 1) {
  absl::StatusOr<TrainConfig> parsed = ParseTrainConfig(config, world);
  EXPECT_FALSE(parsed.ok()) << config.dump();
  return parsed.ok() ? absl::OkStatus() : parsed.status();
}

TrainConfig Parse(const json& config, int world = 1) {
  absl::StatusOr<TrainConfig> parsed = ParseTrainConfig(config, world);
  EXPECT_TRUE(parsed.ok()) << parsed.status() << " for " << config.dump();
  return parsed.ok() ? *parsed : TrainConfig{};
}

TEST(DsConfigTest, FixtureS2Fp32Dp2) {
  const json raw = FixtureDsConfig("s2_fp32_dp2");
  const TrainConfig c = Parse(raw, 2);
  EXPECT_EQ(c.train_batch_size, 8);
  EXPECT_EQ(c.micro_batch_per_gpu, 4);
  EXPECT_EQ(c.gradient_accumulation_steps, 1);
  EXPECT_EQ(c.steps_per_print, 1000000);
  ASSERT_TRUE(c.has_optimizer);
  EXPECT_EQ(c.optimizer.type, "AdamW");
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 0.01);
  EXPECT_DOUBLE_EQ(c.optimizer.beta1, 0.9);
  EXPECT_DOUBLE_EQ(c.optimizer.beta2, 0.95);
  EXPECT_DOUBLE_EQ(c.optimizer.eps, 1e-8);
  EXPECT_DOUBLE_EQ(c.optimizer.weight_decay, 0.05);
  EXPECT_TRUE(c.optimizer.adam_w_mode);
  EXPECT_TRUE(c.optimizer.torch_adam);
  EXPECT_TRUE(c.optimizer.bias_correction);
  EXPECT_EQ(c.scheduler.type, "WarmupLR");
  EXPECT_EQ(c.scheduler.warmup_type, "linear");
  EXPECT_EQ(c.scheduler.warmup_num_steps, 3);
  EXPECT_DOUBLE_EQ(c.scheduler.warmup_min_lr, 0.0);
  EXPECT_EQ(c.scheduler.warmup_max_lr, 0.01);
  EXPECT_DOUBLE_EQ(c.gradient_clipping, 1.0);
  EXPECT_EQ(c.precision, Precision::kFp32);
  EXPECT_EQ(c.zero.stage, 2);
  EXPECT_FALSE(c.zero.overlap_comm);
  EXPECT_FALSE(c.bf16_optimizer());
  EXPECT_FALSE(c.loss_scale.dynamic);
  EXPECT_EQ(c.raw, raw);
}

TEST(DsConfigTest, FixtureS1Bf16OptDp4) {
  const TrainConfig c = Parse(FixtureDsConfig("s1_bf16opt_dp4"), 4);
  EXPECT_EQ(c.micro_batch_per_gpu, 2);
  EXPECT_EQ(c.gradient_accumulation_steps, 1);
  EXPECT_EQ(c.precision, Precision::kBf16);
  EXPECT_EQ(c.grad_accum_dtype, Precision::kFp32);
  EXPECT_EQ(c.zero.stage, 1);
  EXPECT_TRUE(c.bf16_optimizer());
  EXPECT_TRUE(c.bf16_check_grad_overflow);
  // The same config on ZeRO-2 is the plain ZeRO wrapper.
  json z2 = FixtureDsConfig("s1_bf16opt_dp4");
  z2["zero_optimization"]["stage"] = 2;
  EXPECT_FALSE(Parse(z2, 4).bf16_optimizer());
}

TEST(DsConfigTest, FixtureS3Fp32Dp4) {
  const TrainConfig c = Parse(FixtureDsConfig("s3_fp32_dp4"), 4);
  EXPECT_EQ(c.zero.stage, 3);
  EXPECT_EQ(c.zero.param_persistence_threshold, 0);  // via the stage3_ alias
  EXPECT_TRUE(c.zero.overlap_comm);                  // stage 3's default
  EXPECT_EQ(c.zero.prefetch_bucket_size, 50000000);
  EXPECT_EQ(c.zero.model_persistence_threshold, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(c.micro_batch_per_gpu, 2);
  // At another world size the fixture's three numbers are inconsistent.
  EXPECT_THAT(ErrorOf(FixtureDsConfig("s3_fp32_dp4"), 2).message(),
              HasSubstr("train_batch_size 8 must equal train_micro_batch_size_per_gpu 2 * "
                        "gradient_accumulation_steps 1 * data-parallel world size 2"));
}

TEST(DsConfigTest, Defaults) {
  const TrainConfig c = Parse(Minimal(), 2);
  EXPECT_EQ(c.micro_batch_per_gpu, 4);
  EXPECT_EQ(c.gradient_accumulation_steps, 1);
  EXPECT_EQ(c.steps_per_print, 0);
  EXPECT_FALSE(c.has_optimizer);
  EXPECT_TRUE(c.scheduler.type.empty());
  EXPECT_DOUBLE_EQ(c.gradient_clipping, 1.0);
  EXPECT_EQ(c.zero.stage, 0);
  EXPECT_EQ(c.zero.reduce_bucket_size, 500000000);
  EXPECT_EQ(c.zero.sub_group_size, 1000000000);
  EXPECT_EQ(c.tag_validation, "Warn");
  EXPECT_FALSE(c.load_universal);
  EXPECT_FALSE(c.csv_monitor.enabled);
  EXPECT_EQ(c.csv_monitor.job_name, "DeepSpeedJobName");
  EXPECT_EQ(c.EffectiveGradAccumDtype(), Precision::kFp32);
}

TEST(DsConfigTest, BatchArithmetic) {
  // (train, micro) -> GAS; (train, GAS) -> micro; (micro, GAS) -> train; micro only -> GAS 1.
  TrainConfig c = Parse(json{{"train_batch_size", 32}, {"train_micro_batch_size_per_gpu", 4}}, 2);
  EXPECT_EQ(c.gradient_accumulation_steps, 4);
  c = Parse(json{{"train_batch_size", 32}, {"gradient_accumulation_steps", 2}}, 4);
  EXPECT_EQ(c.micro_batch_per_gpu, 4);
  c = Parse(json{{"train_micro_batch_size_per_gpu", 3}, {"gradient_accumulation_steps", 5}}, 2);
  EXPECT_EQ(c.train_batch_size, 30);
  c = Parse(json{{"train_micro_batch_size_per_gpu", 3}}, 4);
  EXPECT_EQ(c.train_batch_size, 12);
  EXPECT_EQ(c.gradient_accumulation_steps, 1);
  // Derived by floor division, then asserted: 10 / 4 / 1 = 2, and 2*1*4 != 10.
  EXPECT_THAT(
      ErrorOf(json{{"train_batch_size", 10}, {"train_micro_batch_size_per_gpu", 4}}, 1).message(),
      HasSubstr("train_batch_size 10 must equal train_micro_batch_size_per_gpu 4 * "
                "gradient_accumulation_steps 2 * data-parallel world size 1"));
  EXPECT_THAT(ErrorOf(json{{"gradient_accumulation_steps", 2}}).message(),
              HasSubstr("either `train_batch_size` or `train_micro_batch_size_per_gpu`"));
  EXPECT_THAT(ErrorOf(json{{"train_batch_size", 0}}).message(),
              HasSubstr("`train_batch_size` must be positive"));
  EXPECT_THAT(ErrorOf(json{{"train_batch_size", 8}}, 16).message(),
              HasSubstr("train_micro_batch_size_per_gpu 0"));
}

TEST(DsConfigTest, ScientificIntegersAndTypeErrors) {
  TrainConfig c = Parse(With(
      Minimal(), {{"zero_optimization",
                   {{"stage", 2}, {"reduce_bucket_size", 5e8}, {"allgather_bucket_size", 2e8}}}}));
  EXPECT_EQ(c.zero.reduce_bucket_size, 500000000);
  EXPECT_EQ(c.zero.allgather_bucket_size, 200000000);
  absl::Status s = ErrorOf(With(Minimal(), {{"zero_optimization", {{"reduce_bucket_size", 5.5}}}}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("`zero_optimization.reduce_bucket_size` must be an integer, "
                                     "got number 5.5"));
  s = ErrorOf(With(Minimal(), {{"zero_optimization", {{"stage", "2"}}}}));
  EXPECT_THAT(s.message(), HasSubstr("`zero_optimization.stage` must be an integer, got string"));
  s = ErrorOf(With(Minimal(), {{"fp16", {{"enabled", 1}}}}));
  EXPECT_THAT(s.message(), HasSubstr("`fp16.enabled` must be a boolean"));
  s = ErrorOf(With(Minimal(), {{"zero_optimization", {{"stage", 4}}}}));
  EXPECT_THAT(s.message(), HasSubstr("`zero_optimization.stage` must be 0, 1, 2 or 3, got 4"));
  s = ErrorOf(With(Minimal(), {{"optimizer", {{"type", "Adam"}, {"params", {{"betas", 0.9}}}}}}));
  EXPECT_THAT(s.message(), HasSubstr("`optimizer.params.betas` must be an array of two numbers"));
}

TEST(DsConfigTest, UnknownKeysNameThePathAndSuggest) {
  absl::Status s = ErrorOf(With(Minimal(), {{"zero_optimization", {{"reduce_bucket_sz", 1000}}}}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr("unknown key `zero_optimization.reduce_bucket_sz`"),
                    HasSubstr("did you mean `zero_optimization.reduce_bucket_size`?")));
  s = ErrorOf(With(Minimal(), {{"gradient_cliping", 1.0}}));
  EXPECT_THAT(s.message(), HasSubstr("did you mean `gradient_clipping`?"));
  s = ErrorOf(
      With(Minimal(), {{"optimizer", {{"type", "AdamW"}, {"params", {{"lr", 1}, {"beta", 1}}}}}}));
  EXPECT_THAT(s.message(), AllOf(HasSubstr("`optimizer.params.beta`"),
                                 HasSubstr("did you mean `optimizer.params.betas`?")));
  s = ErrorOf(With(Minimal(),
                   {{"scheduler", {{"type", "WarmupLR"}, {"params", {{"warmup_num_step", 3}}}}}}));
  EXPECT_THAT(s.message(), HasSubstr("did you mean `scheduler.params.warmup_num_steps`?"));
  s = ErrorOf(With(Minimal(), {{"bf16", {{"enable", true}}}}));
  EXPECT_THAT(s.message(), HasSubstr("did you mean `bf16.enabled`?"));
  // Nothing close: no suggestion.
  s = ErrorOf(With(Minimal(), {{"completely_unrelated", 1}}));
  EXPECT_THAT(s.message(), HasSubstr("unknown key `completely_unrelated`"));
  EXPECT_THAT(std::string(s.message()), ::testing::Not(HasSubstr("did you mean")));
}

TEST(DsConfigTest, HarmlessKnownKeysAreAccepted) {
  const TrainConfig c = Parse(
      With(Minimal(),
           {{"wall_clock_breakdown", true},
            {"zero_allow_untested_optimizer", true},
            {"dataloader_drop_last", true},
            {"memory_breakdown", false},
            {"flops_profiler", {{"enabled", false}}},
            {"tensorboard", {{"enabled", false}, {"output_path", "x"}}},
            {"wandb", {{"enabled", false}}},
            {"comms_logger", {{"enabled", true}}},
            {"checkpoint",
             {{"tag_validation", "fail"},
              {"load_universal", true},
              {"parallel_write", {{"pipeline_stage", false}}}}},
            {"csv_monitor", {{"enabled", true}, {"output_path", "/tmp/m"}, {"job_name", "j"}}},
            {"tensor_parallel", {{"autotp_size", 1}}},
            {"sequence_parallel_size", 1},
            {"expert_parallel", {{"enabled", false}, {"autoep_size", 2}}}}));
  EXPECT_TRUE(c.wall_clock_breakdown);
  EXPECT_EQ(c.tag_validation, "Fail");
  EXPECT_TRUE(c.load_universal);
  EXPECT_TRUE(c.csv_monitor.enabled);
  EXPECT_EQ(c.csv_monitor.output_path, "/tmp/m");
  EXPECT_EQ(c.csv_monitor.job_name, "j");
}

TEST(DsConfigTest, Precision) {
  TrainConfig c = Parse(With(Minimal(), {{"bfloat16", {{"enabled", true}}}}));
  EXPECT_EQ(c.precision, Precision::kBf16);
  EXPECT_EQ(c.EffectiveGradAccumDtype(), Precision::kBf16);
  EXPECT_THAT(
      ErrorOf(With(Minimal(), {{"bf16", {{"enabled", true}}}, {"bfloat16", {{"enabled", true}}}}))
          .message(),
      HasSubstr("`bf16` and its alias `bfloat16` are both given"));
  EXPECT_THAT(
      ErrorOf(With(Minimal(), {{"bf16", {{"enabled", true}}}, {"fp16", {{"enabled", true}}}}))
          .message(),
      HasSubstr("`fp16.enabled` and `bf16.enabled` cannot both be true"));
  c = Parse(With(Minimal(), {{"fp16", {{"enabled", true}, {"initial_scale_power", 8}}}}));
  EXPECT_EQ(c.precision, Precision::kFp16);
  EXPECT_TRUE(c.loss_scale.dynamic);
  EXPECT_EQ(c.loss_scale.initial_scale_power, 8);
  EXPECT_EQ(c.loss_scale.hysteresis, 2);
  c = Parse(With(Minimal(), {{"fp16", {{"enabled", true}, {"loss_scale", 128}}}}));
  EXPECT_FALSE(c.loss_scale.dynamic);
  EXPECT_DOUBLE_EQ(c.loss_scale.static_scale, 128);
  // param_dtype must match the precision flags.
  EXPECT_THAT(ErrorOf(With(Minimal(), {{"data_types", {{"param_dtype", "bf16"}}}})).message(),
              AllOf(HasSubstr("`data_types.param_dtype` bf16"),
                    HasSubstr("`fp16.enabled` / `bf16.enabled` (fp32)")));
  c = Parse(With(Minimal(), {{"bf16", {{"enabled", true}}},
                             {"data_types", {{"param_dtype", "torch.bfloat16"}}},
                             {"communication_data_type", "FP32"}}));
  EXPECT_EQ(c.communication_data_type, Precision::kFp32);
  // Stage 0 cannot accumulate in another dtype than the model's.
  EXPECT_THAT(ErrorOf(With(Minimal(), {{"bf16", {{"enabled", true}}},
                                       {"data_types", {{"grad_accum_dtype", "fp32"}}}}))
                  .message(),
              HasSubstr("`data_types.grad_accum_dtype` fp32 differs from the model dtype bf16"));
  EXPECT_THAT(ErrorOf(With(Minimal(), {{"data_types", {{"grad_accum_dtype", "fp8"}}}})).message(),
              HasSubstr("`data_types.grad_accum_dtype` must be fp32, bf16 or fp16"));
}

TEST(DsConfigTest, Optimizer) {
  TrainConfig c = Parse(With(Minimal(), {{"optimizer", {{"type", "adam"}}}}));
  EXPECT_TRUE(c.has_optimizer);
  EXPECT_TRUE(c.optimizer.adam_w_mode);  // "Adam" is decoupled by default (§4.5)
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 1e-3);
  EXPECT_DOUBLE_EQ(c.optimizer.beta2, 0.999);
  c = Parse(
      With(Minimal(), {{"optimizer", {{"type", "Adam"}, {"params", {{"adam_w_mode", false}}}}}}));
  EXPECT_FALSE(c.optimizer.adam_w_mode);
  c = Parse(
      With(Minimal(), {{"optimizer", {{"type", "AdamW"}, {"params", {{"adam_w_mode", false}}}}}}));
  EXPECT_TRUE(c.optimizer.adam_w_mode);
  absl::Status s = ErrorOf(With(Minimal(), {{"optimizer", {{"type", "Lamb"}}}}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(),
              HasSubstr("\"Lamb\" is not supported by ucp train (supported: Adam, AdamW)"));
  s = ErrorOf(
      With(Minimal(), {{"optimizer", {{"type", "Adam"}, {"params", {{"max_grad_norm", 1.0}}}}}}));
  EXPECT_THAT(s.message(), HasSubstr("`optimizer.params.max_grad_norm` is not supported: use the "
                                     "top-level `gradient_clipping`"));
}

TEST(DsConfigTest, Scheduler) {
  TrainConfig c = Parse(
      With(Minimal(),
           {{"scheduler", {{"type", "WarmupDecayLR"}, {"params", {{"total_num_steps", 100}}}}}}));
  EXPECT_EQ(c.scheduler.warmup_max_lr, 0.001);  // WarmupDecayLR's own default
  EXPECT_EQ(c.scheduler.warmup_type, "log");
  EXPECT_EQ(c.scheduler.warmup_num_steps, 1000);
  c = Parse(With(Minimal(), {{"scheduler", {{"type", "WarmupLR"}}}}));
  EXPECT_FALSE(c.scheduler.warmup_max_lr.has_value());  // the optimizer lr
  c = Parse(
      With(Minimal(), {{"scheduler",
                        {{"type", "WarmupCosineLR"},
                         {"params", {{"total_num_steps", 1e3}, {"warmup_min_ratio", 0.1}}}}}}));
  EXPECT_EQ(c.scheduler.total_num_steps, 1000);
  EXPECT_DOUBLE_EQ(c.scheduler.warmup_min_ratio, 0.1);
  EXPECT_DOUBLE_EQ(c.scheduler.cos_min_ratio, 1e-4);
  EXPECT_THAT(ErrorOf(With(Minimal(), {{"scheduler", {{"type", "WarmupDecayLR"}}}})).message(),
              HasSubstr("`scheduler.params.total_num_steps` is required by WarmupDecayLR"));
  absl::Status s = ErrorOf(With(Minimal(), {{"scheduler", {{"type", "OneCycle"}}}}));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("`scheduler.type`"));
  // WarmupCosineLR has no warmup_min_lr.
  EXPECT_THAT(
      ErrorOf(With(Minimal(), {{"scheduler",
                                {{"type", "WarmupCosineLR"},
                                 {"params", {{"total_num_steps", 9}, {"warmup_min_lr", 0}}}}}}))
          .message(),
      HasSubstr("unknown key `scheduler.params.warmup_min_lr`"));
  EXPECT_THAT(
      ErrorOf(With(Minimal(), {{"scheduler",
                                {{"type", "WarmupLR"}, {"params", {{"warmup_type", "cosine"}}}}}}))
          .message(),
      HasSubstr("must be \"log\" or \"linear\""));
}

TEST(DsConfigTest, Zero) {
  TrainConfig c = Parse(With(Minimal(), {{"zero_optimization", true}}));
  EXPECT_EQ(c.zero.stage, 1);  // the deprecated boolean form
  c = Parse(With(Minimal(), {{"zero_optimization",
                              {{"stage", 3},
                               {"max_live_parameters", 1e6},
                               {"stage3_max_reuse_distance", 5},
                               {"overlap_comm", false},
                               {"offload_optimizer", {{"device", "none"}}}}}}));
  EXPECT_EQ(c.zero.max_live_parameters, 1000000);
  EXPECT_EQ(c.zero.max_reuse_distance, 5);
  EXPECT_FALSE(c.zero.overlap_comm);
  EXPECT_THAT(ErrorOf(With(Minimal(),
                           {{"zero_optimization",
                             {{"prefetch_bucket_size", 1}, {"stage3_prefetch_bucket_size", 2}}}}))
                  .message(),
              HasSubstr("`zero_optimization.prefetch_bucket_size` and its alias "
                        "`zero_optimization.stage3_prefetch_bucket_size` are both given"));
}

TEST(DsConfigTest, UnimplementedFeaturesNameTheKey) {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"zero_optimization", {{"stage", 2}, {"offload_optimizer", {{"device", "cpu"}}}}}},
       "`zero_optimization.offload_optimizer.device`"},
      {{{"zero_optimization", {{"stage", 3}, {"offload_param", {{"device", "nvme"}}}}}},
       "`zero_optimization.offload_param.device`"},
      {{{"zero_optimization", {{"zero_quantized_weights", true}}}},
       "`zero_optimization.zero_quantized_weights`"},
      {{{"zero_optimization", {{"mics_shard_size", 2}}}}, "`zero_optimization.mics_shard_size`"},
      {{{"zero_optimization", {{"zero_hpz_partition_size", 2}}}},
       "`zero_optimization.zero_hpz_partition_size`"},
      {{{"fp16", {{"enabled", true}, {"auto_cast", true}}}}, "`fp16.auto_cast`"},
      {{{"torch_autocast", {{"enabled", true}}}}, "`torch_autocast.enabled`"},
      {{{"gradient_allreduce_op", "sum"}}, "`gradient_allreduce_op`"},
      {{{"tensor_parallel", {{"tp", {{"tp_grain_size", 64}}}}}},
       "`tensor_parallel.tp.tp_grain_size`"},
      {{{"tensorboard", {{"enabled", true}}}}, "`tensorboard.enabled`"},
  };
  for (const auto& [patch, key] : cases) {
    const absl::Status s = ErrorOf(With(Minimal(), patch));
    EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << patch.dump() << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr(key)) << patch.dump();
  }
}

// activation_checkpointing: the block turns on the runtime's checkpointing of every unit; its
// defaults are accepted, the knobs that change what is kept or where are refused by name.
TEST(DsConfigTest, ActivationCheckpointingBlock) {
  EXPECT_FALSE(Parse(Minimal()).activation_checkpointing);
  EXPECT_TRUE(Parse(With(Minimal(), {{"activation_checkpointing", json::object()}}))
                  .activation_checkpointing);
  const json defaults = {{"partition_activations", false},          {"cpu_checkpointing", false},
                         {"contiguous_memory_optimization", false}, {"number_checkpoints", nullptr},
                         {"synchronize_checkpoint_boundary", true}, {"profile", false}};
  EXPECT_TRUE(
      Parse(With(Minimal(), {{"activation_checkpointing", defaults}})).activation_checkpointing);
  for (const char* key : {"partition_activations", "cpu_checkpointing",
                          "contiguous_memory_optimization", "profile"}) {
    const absl::Status s = ErrorOf(With(Minimal(), {{"activation_checkpointing", {{key, true}}}}));
    EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << key;
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("`activation_checkpointing.", key, "`")));
  }
  const absl::Status n =
      ErrorOf(With(Minimal(), {{"activation_checkpointing", {{"number_checkpoints", 4}}}}));
  EXPECT_EQ(n.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(n.message(), HasSubstr("`activation_checkpointing.number_checkpoints`"));
  EXPECT_THAT(
      ErrorOf(With(Minimal(), {{"activation_checkpointing", {{"partition_activation", false}}}}))
          .message(),
      HasSubstr("did you mean `activation_checkpointing.partition_activations`?"));
  EXPECT_THAT(ErrorOf(With(Minimal(), {{"activation_checkpointing", true}})).message(),
              HasSubstr("activation_checkpointing"));
}

// AutoTP: tensor-parallel ranks are not data parallel (the batch rule counts world / tp).
TEST(DsConfigTest, AutoTpSizeDividesTheWorldAndTheBatchRuleCountsDataParallelRanks) {
  const TrainConfig c = Parse(With(Minimal(), {{"tensor_parallel", {{"autotp_size", 2}}},
                                               {"train_micro_batch_size_per_gpu", 2}}),
                              4);
  EXPECT_EQ(c.autotp_size, 2);
  EXPECT_EQ(c.gradient_accumulation_steps, 2);  // 8 = 2 micro x 2 GAS x (4 / 2) dp
  EXPECT_THAT(ErrorOf(With(Minimal(), {{"tensor_parallel", {{"autotp_size", 3}}}}), 4).message(),
              HasSubstr("does not divide the world size 4"));
  EXPECT_THAT(ErrorOf(With(Minimal(),
                           {{"tensor_parallel", {{"autotp_size", 2}}}, {"data_parallel_size", 4}}),
                      4)
                  .message(),
              HasSubstr("`data_parallel_size` 4 does not match the data-parallel world size 2"));
}

TEST(DsConfigTest, Contradictions) {
  EXPECT_THAT(ErrorOf(With(Minimal(), {{"gradient_allreduce_op", "sum"},
                                       {"zero_optimization", {{"stage", 3}}}}))
                  .message(),
              HasSubstr("`gradient_allreduce_op` \"sum\" is not supported with "
                        "`zero_optimization.stage` 3"));
  EXPECT_THAT(
      ErrorOf(With(Minimal(),
                   {{"gradient_predivide_factor", 2.0}, {"zero_optimization", {{"stage", 2}}}}))
          .message(),
      HasSubstr("`gradient_predivide_factor` must be 1.0 with `zero_optimization.stage` 2"));
  // Stage 1 uses the same wrapper without reduce-scatter of gradients: allowed.
  EXPECT_DOUBLE_EQ(Parse(With(Minimal(), {{"gradient_predivide_factor", 2.0},
                                          {"zero_optimization", {{"stage", 1}}}}))
                       .gradient_predivide_factor,
                   2.0);
  EXPECT_THAT(ErrorOf(With(Minimal(), {{"data_parallel_size", 4}}), 2).message(),
              HasSubstr("`data_parallel_size` 4 does not match the data-parallel world size 2"));
  EXPECT_THAT(
      ErrorOf(With(Minimal(), {{"expert_parallel", {{"load_balance_coeff", 0}}}})).message(),
      AllOf(HasSubstr("`expert_parallel.load_balance_coeff`"),
            HasSubstr("load_balance_coeff=0 is not supported"), HasSubstr("omit the key")));
  // AutoEP itself is implemented (autoep_config_test.cc); its topology is checked here.
  EXPECT_TRUE(
      ParseTrainConfig(With(Minimal(), {{"expert_parallel", {{"enabled", true}}}}), 1).ok());
  EXPECT_THAT(
      ErrorOf(With(Minimal(), {{"expert_parallel", {{"enabled", true}, {"autoep_size", 3}}}}), 2)
          .message(),
      HasSubstr("Computed edp would be non-integral"));
}

TEST(DsConfigTest, LoadTrainConfigNamesTheFile) {
  const std::string dir = ::testing::TempDir();
  const std::string good = dir + "/ds_good.json";
  std::ofstream(good) << FixtureDsConfig("s2_fp32_dp2").dump();
  absl::StatusOr<TrainConfig> c = LoadTrainConfig(good, 2);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->zero.stage, 2);
  const std::string bad = dir + "/ds_bad.json";
  std::ofstream(bad) << R"({"train_batch_size": 8, "zero_optimization": {"stag": 1}})";
  absl::Status s = LoadTrainConfig(bad, 1).status();
  EXPECT_THAT(s.message(), AllOf(HasSubstr(bad), HasSubstr("`zero_optimization.stag`"),
                                 HasSubstr("did you mean `zero_optimization.stage`?")));
  const std::string broken = dir + "/ds_broken.json";
  std::ofstream(broken) << "{ not json";
  EXPECT_THAT(LoadTrainConfig(broken, 1).status().message(),
              AllOf(HasSubstr(broken), HasSubstr("not valid JSON")));
  EXPECT_EQ(LoadTrainConfig(dir + "/missing.json", 1).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace ucp::runtime
