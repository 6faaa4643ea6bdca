#include "runtime/config/lr_schedule.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <numbers>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace ucp::runtime {
namespace {

using json = nlohmann::json;

json Fixture(const std::string& name, const std::string& file) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  std::ifstream in(
      absl::StrCat(root != nullptr ? root : ".", "/fixtures/deepspeed/", name, "/", file));
  EXPECT_TRUE(in.good()) << name << "/" << file;
  return json::parse(in);
}

// The lr of 1-based optimizer step `step` when no step was skipped: the scheduler is at
// last_batch_iteration step - 2 (constructed at -1, stepped after each update).
double StepLr(const SchedulerConfig& s, double base_lr, int64_t step) {
  return ScheduledLr(s, base_lr, step - 2);
}

TEST(LrScheduleTest, FixtureWarmupLrLinear) {
  const json raw = Fixture("s2_fp32_dp2", "manifest.json")["ds_config"];
  absl::StatusOr<TrainConfig> c = ParseTrainConfig(raw, 2);
  ASSERT_TRUE(c.ok()) << c.status();
  const SchedulerConfig& s = c->scheduler;
  const double base = c->optimizer.lr;
  // The first two steps run at warmup_min_lr (§4.7), then 1/3, 2/3 and all of 0.01.
  EXPECT_DOUBLE_EQ(StepLr(s, base, 1), 0.0);
  EXPECT_DOUBLE_EQ(StepLr(s, base, 2), 0.0);
  EXPECT_DOUBLE_EQ(StepLr(s, base, 3), 0.01 / 3);
  EXPECT_DOUBLE_EQ(StepLr(s, base, 4), 0.01 * 2 / 3);
  EXPECT_DOUBLE_EQ(StepLr(s, base, 5), 0.01);
  EXPECT_DOUBLE_EQ(StepLr(s, base, 100), 0.01);
  // DeepSpeed recorded the scheduler after 5 steps at last_batch_iteration 4, with lr 0.01 in
  // every param group.
  const json live = Fixture("s2_fp32_dp2", "run_log.json")["live_state_at_save"];
  const int64_t it = live["lr_scheduler"]["last_batch_iteration"].get<int64_t>();
  EXPECT_EQ(it, 4);
  for (const json& group : live["basic_optimizer_param_groups"]) {
    EXPECT_DOUBLE_EQ(ScheduledLr(s, base, it), group["lr"].get<double>());
  }
}

// Sequences printed by DeepSpeed's own lr_schedules.py (edaa7221, run standalone on a torch SGD
// optimizer): element i is the lr after construction and i scheduler steps, i.e. at
// last_batch_iteration i - 1. Same operations in the same order, so the doubles match exactly.
void ExpectSequence(const SchedulerConfig& s, double base, const std::vector<double>& expected) {
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(ScheduledLr(s, base, static_cast<int64_t>(i) - 1), expected[i]) << s.type << " " << i;
  }
}

TEST(LrScheduleTest, MatchesDeepSpeedExactly) {
  SchedulerConfig s;
  s.type = "WarmupLR";
  s.warmup_min_lr = 0.001;
  s.warmup_max_lr = 0.011;
  s.warmup_num_steps = 10;
  ExpectSequence(s, 99,
                 {0.001, 0.001, 0.004010299956639811, 0.0057712125471966235, 0.007020599913279622,
                  0.007989700043360186, 0.008781512503836434, 0.009450980400142566,
                  0.010030899869919431, 0.010542425094393248, 0.010999999999999996, 0.011});
  s = SchedulerConfig{};
  s.type = "WarmupDecayLR";
  s.warmup_type = "linear";
  s.warmup_num_steps = 4;
  s.total_num_steps = 12;
  s.warmup_max_lr = 0.1;
  ExpectSequence(
      s, 1,
      {0.0, 0.0, 0.025, 0.05, 0.07500000000000001, 0.1, 0.08750000000000001, 0.07500000000000001,
       0.0625, 0.05, 0.037500000000000006, 0.025, 0.0125, 0.0, 0.0, 0.0});
  s = SchedulerConfig{};
  s.type = "WarmupCosineLR";
  s.warmup_type = "linear";
  s.warmup_num_steps = 4;
  s.total_num_steps = 14;
  s.warmup_min_ratio = 0.2;
  s.cos_min_ratio = 0.1;
  ExpectSequence(s, 0.5,
                 {0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.48898771616640957, 0.45702882373436315,
                  0.40725168176580645, 0.34452882373436317, 0.275, 0.20547117626563688,
                  0.1427483182341936, 0.09297117626563686, 0.06101228383359046, 0.05, 0.05, 0.05});
}

TEST(LrScheduleTest, NoSchedulerIsTheBaseLr) {
  EXPECT_DOUBLE_EQ(ScheduledLr(SchedulerConfig{}, 0.25, -1), 0.25);
  EXPECT_DOUBLE_EQ(ScheduledLr(SchedulerConfig{}, 0.25, 7), 0.25);
}

TEST(LrScheduleTest, WarmupLrLog) {
  SchedulerConfig s;
  s.type = "WarmupLR";
  s.warmup_min_lr = 0.001;
  s.warmup_max_lr = 0.011;
  s.warmup_num_steps = 10;
  EXPECT_DOUBLE_EQ(ScheduledLr(s, 99, -1), 0.001);
  EXPECT_DOUBLE_EQ(ScheduledLr(s, 99, 0), 0.001);  // log(1) = 0
  EXPECT_DOUBLE_EQ(ScheduledLr(s, 99, 4), 0.001 + 0.01 * std::log(5.0) / std::log(10.0));
  EXPECT_DOUBLE_EQ(ScheduledLr(s, 99, 9), 0.001 + 0.01 * std::log(10.0) / std::log(10.0));
  EXPECT_DOUBLE_EQ(ScheduledLr(s, 99, 10), 0.011);
  // Default max: the optimizer's lr.
  s.warmup_max_lr.reset();
  EXPECT_DOUBLE_EQ(ScheduledLr(s, 0.5, 50), 0.5);
  // warmup_num_steps is raised to 2 (1 would divide by log(1) = 0).
  s.warmup_num_steps = 1;
  s.warmup_type = "linear";
  EXPECT_DOUBLE_EQ(ScheduledLr(s, 0.5, 1), 0.001 + (0.5 - 0.001) * 0.5);
}

TEST(LrScheduleTest, WarmupDecayLr) {
  SchedulerConfig s;
  s.type = "WarmupDecayLR";
  s.warmup_type = "linear";
  s.warmup_num_steps = 4;
  s.total_num_steps = 12;
  s.warmup_max_lr = 0.1;
  EXPECT_DOUBLE_EQ(ScheduledLr(s, 1, -1), 0.0);
  EXPECT_DOUBLE_EQ(ScheduledLr(s, 1, 2), 0.05);
  EXPECT_DOUBLE_EQ(ScheduledLr(s, 1, 4), 0.1);   // (12-4)/(12-4)
  EXPECT_DOUBLE_EQ(ScheduledLr(s, 1, 8), 0.05);  // (12-8)/8
  EXPECT_DOUBLE_EQ(ScheduledLr(s, 1, 12), 0.0);
  EXPECT_DOUBLE_EQ(ScheduledLr(s, 1, 20), 0.0);  // clamped at 0
  s.warmup_max_lr.reset();                       // WarmupDecayLR's default is 0.001
  EXPECT_DOUBLE_EQ(ScheduledLr(s, 1, 4), 0.001);
}

TEST(LrScheduleTest, WarmupCosineLr) {
  SchedulerConfig s;
  s.type = "WarmupCosineLR";
  s.warmup_type = "linear";
  s.warmup_num_steps = 4;
  s.total_num_steps = 14;
  s.warmup_min_ratio = 0.2;
  s.cos_min_ratio = 0.1;
  const double base = 0.5;
  EXPECT_DOUBLE_EQ(ScheduledLr(s, base, -1), 0.0);  // not warmup_min_ratio: DeepSpeed returns 0
  EXPECT_DOUBLE_EQ(ScheduledLr(s, base, 0), base * 0.2);
  EXPECT_DOUBLE_EQ(ScheduledLr(s, base, 2), base * (0.2 + 0.5 * 0.8));
  // After warmup: progress (it - N + 1) / (total - N), cosine from 1 to cos_min_ratio.
  const auto cosine = [&](double progress) {
    return base * (0.1 + 0.9 * (1 + std::cos(std::numbers::pi * progress)) / 2);
  };
  EXPECT_DOUBLE_EQ(ScheduledLr(s, base, 4), cosine(0.1));
  EXPECT_DOUBLE_EQ(ScheduledLr(s, base, 8), cosine(0.5));
  EXPECT_DOUBLE_EQ(ScheduledLr(s, base, 13), base * 0.1);
  EXPECT_DOUBLE_EQ(ScheduledLr(s, base, 40), base * 0.1);  // clamped, no oscillation
}

TEST(LossScalerTest, StaticForBf16AndFp32) {
  TrainConfig c;
  c.precision = Precision::kBf16;
  DynamicLossScaler scaler = DynamicLossScaler::FromConfig(c);
  EXPECT_FALSE(scaler.dynamic);
  EXPECT_DOUBLE_EQ(scaler.cur_scale, 1.0);
  EXPECT_TRUE(scaler.Update(true).ok());
  EXPECT_DOUBLE_EQ(scaler.cur_scale, 1.0);
  c.precision = Precision::kFp16;
  c.loss_scale.static_scale = 64;
  EXPECT_DOUBLE_EQ(DynamicLossScaler::FromConfig(c).cur_scale, 64);
}

TEST(LossScalerTest, DynamicHysteresisAndGrowth) {
  TrainConfig c;
  c.precision = Precision::kFp16;
  c.loss_scale.dynamic = true;
  c.loss_scale.initial_scale_power = 4;
  c.loss_scale.loss_scale_window = 3;
  c.loss_scale.hysteresis = 2;
  DynamicLossScaler s = DynamicLossScaler::FromConfig(c);
  EXPECT_DOUBLE_EQ(s.cur_scale, 16);
  // First overflow only spends hysteresis; the second halves the scale.
  ASSERT_TRUE(s.Update(true).ok());
  EXPECT_DOUBLE_EQ(s.cur_scale, 16);
  EXPECT_EQ(s.cur_hysteresis, 1);
  ASSERT_TRUE(s.Update(true).ok());
  EXPECT_DOUBLE_EQ(s.cur_scale, 8);
  EXPECT_EQ(s.last_overflow_iter, 1);
  EXPECT_EQ(s.cur_iter, 2);
  // Stable interval (cur_iter - last_overflow - 1) reaches 3 at cur_iter 5: grow, refill.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(s.Update(false).ok());
    EXPECT_DOUBLE_EQ(s.cur_scale, 8) << i;
  }
  ASSERT_TRUE(s.Update(false).ok());
  EXPECT_DOUBLE_EQ(s.cur_scale, 16);
  EXPECT_EQ(s.cur_hysteresis, 2);
  EXPECT_EQ(s.cur_iter, 6);
}

TEST(LossScalerTest, MinimumScale) {
  DynamicLossScaler s;
  s.dynamic = true;
  s.cur_scale = 2;
  s.min_scale = 1;
  s.delayed_shift = s.cur_hysteresis = 1;
  ASSERT_TRUE(s.Update(true).ok());
  EXPECT_DOUBLE_EQ(s.cur_scale, 1);
  EXPECT_EQ(s.Update(true).code(), absl::StatusCode::kFailedPrecondition);
  s.raise_error_at_min_scale = false;
  EXPECT_TRUE(s.Update(true).ok());
  EXPECT_DOUBLE_EQ(s.cur_scale, 1);
}

}  // namespace
}  // namespace ucp::runtime
