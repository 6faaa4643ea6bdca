// PlanZeroSink at ZeRO-3 on the fixture UCPs: plan shape, target validation, the bf16 file names,
// and an autoep_size change (no DeepSpeed golden exists for one) checked against the UCP's merged
// expert tensors. Every golden (both inputs, all stages) is in tests/integration/reshard_test.cc.
#include "converters/sinks/zero/zero_sink.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "converters/deepspeed/checkpoint_index.h"
#include "converters/execute/executor.h"
#include "formats/base/scratch_dir_testutil.h"
#include "formats/base/status.h"
#include "formats/torch/torch_file.h"
#include "gtest/gtest.h"

namespace ucp::converters::sinks {
namespace {

namespace fs = std::filesystem;
using formats::torch::TorchFile;
using formats::torch::Value;
using plan::Plan;

std::string Case(const std::string& name) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return std::string(root != nullptr ? root : ".") + "/fixtures/deepspeed/" + name;
}
std::string Ucp(const std::string& name) {
  return Case(name) + "/checkpoint/global_step5_universal";
}

constexpr char kAutoep[] = "autoep_qwen3_s3_fp32_dp4_ep2";

// A target at dp, ep (0: the input's).
ZeroTarget At(const ZeroSinkInput& in, int dp, int ep = 0, const Value* ds_config = nullptr) {
  ZeroTarget t;
  t.topology.dp = dp;
  t.topology.ep = ep > 0 ? ep : in.topology.ep;
  t.ds_config = ds_config;
  return t;
}

TEST(ZeroSink, PlansOneModelAndOneOptimizerFilePerRank) {
  absl::StatusOr<ZeroSinkInput> in = ZeroSinkInputFromUcp(Ucp("s3_fp32_dp2"));
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->topology.dp, 2);
  EXPECT_EQ(in->zero_stage, 3);
  EXPECT_EQ(in->groups.size(), 2u);
  EXPECT_EQ(in->params.size(), 16u);
  ASSERT_EQ(in->frozen.size(), 1u);
  EXPECT_EQ(in->frozen[0].name, "pos");
  absl::StatusOr<Plan> plan = PlanZeroSink(*in, At(*in, 4));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->files.size(), 8u);
  EXPECT_EQ(plan->files[0].path, "zero_pp_rank_0_mp_rank_00_model_states.pt");
  EXPECT_EQ(plan->files[7].path, "zero_pp_rank_3_mp_rank_00_optim_states.pt");
  // head_bias (61 elements) over 4 ranks leaves 3 padding elements: the zero source exists.
  EXPECT_EQ(plan->sources.back().path, "<zeros>");
  EXPECT_EQ(plan->sources.back().size, 3u * 4u);
  EXPECT_EQ(plan->info.dp_size, 4);
}

// DeepSpeed names a bf16 run's optimizer files bf16_zero_pp_rank_* at every stage (engine
// _get_zero_ckpt_name: the prefix follows bf16.enabled of the writing run); ZeRO-3 model files keep
// zero_pp_rank_*. fixtures/deepspeed/s3_bf16_dp2/reshard_dp4 is DeepSpeed's own re-save.
TEST(ZeroSink, Bf16RunsNameTheirOptimizerFilesBf16) {
  absl::StatusOr<ZeroSinkInput> in = ZeroSinkInputFromUcp(Ucp("s3_bf16_dp2"));
  ASSERT_TRUE(in.ok()) << in.status();
  absl::StatusOr<Plan> plan = PlanZeroSink(*in, At(*in, 4));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->files.size(), 8u);
  EXPECT_EQ(plan->files[0].path, "zero_pp_rank_0_mp_rank_00_model_states.pt");
  EXPECT_EQ(plan->files[1].path, "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt");
  EXPECT_EQ(plan->files[7].path, "bf16_zero_pp_rank_3_mp_rank_00_optim_states.pt");
  // The target's ds_config decides (DeepSpeed's "bf16" key, else the old "bfloat16" one).
  formats::torch::ValueArena arena;
  Value* off = arena.Dict();
  arena.SetItem(off, "enabled", arena.Bool(false));
  Value* config = arena.Dict();
  arena.SetItem(config, "bf16", off);
  plan = PlanZeroSink(*in, At(*in, 2, 0, config));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->files[1].path, "zero_pp_rank_0_mp_rank_00_optim_states.pt");
  absl::StatusOr<ZeroSinkInput> fp32 = ZeroSinkInputFromUcp(Ucp("s3_fp32_dp2"));
  ASSERT_TRUE(fp32.ok()) << fp32.status();
  Value* on = arena.Dict();
  arena.SetItem(on, "enabled", arena.Bool(true));
  Value* old_key = arena.Dict();
  arena.SetItem(old_key, "bfloat16", on);
  plan = PlanZeroSink(*fp32, At(*fp32, 2, 0, old_key));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->files[1].path, "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt");
}

TEST(ZeroSink, RejectsBadTargets) {
  absl::StatusOr<ZeroSinkInput> dense = ZeroSinkInputFromUcp(Ucp("s3_fp32_dp2"));
  absl::StatusOr<ZeroSinkInput> moe = ZeroSinkInputFromUcp(Ucp(kAutoep));
  ASSERT_TRUE(dense.ok()) << dense.status();
  ASSERT_TRUE(moe.ok()) << moe.status();
  EXPECT_EQ(moe->topology.ep, 2);
  EXPECT_EQ(PlanZeroSink(*dense, At(*dense, 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanZeroSink(*dense, At(*dense, 2, 2)).status().code(),
            absl::StatusCode::kInvalidArgument);  // no AutoEP layers
  EXPECT_EQ(PlanZeroSink(*moe, At(*moe, 3)).status().code(),
            absl::StatusCode::kInvalidArgument);  // 3 is not a multiple of ep 2
  EXPECT_EQ(PlanZeroSink(*moe, At(*moe, 6, 3)).status().code(),
            absl::StatusCode::kInvalidArgument);  // 4 experts over 3 EP ranks
}

// The plan size is checked from counts before anything per rank exists: a million ranks of this
// model is refused as a usage error naming the numbers; the limit is the target's.
TEST(ZeroSink, RefusesAbsurdPlansFromCountsAlone) {
  absl::StatusOr<ZeroSinkInput> in = ZeroSinkInputFromUcp(Ucp("s3_fp32_dp2"));
  ASSERT_TRUE(in.ok()) << in.status();
  ZeroTarget t = At(*in, 1000000);
  absl::StatusOr<int> stage = CheckZeroTarget(*in, t);
  EXPECT_EQ(stage.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ucp::IsUsageError(stage.status()));
  EXPECT_NE(stage.status().message().find(
                "target dp 1000000: 2000000 files holding 16000000 parameter pieces"),
            std::string::npos)
      << stage.status();
  t.max_metadata_bytes = uint64_t{1} << 40;  // raised: only the file count is left, and it passes
  EXPECT_EQ(CheckZeroTarget(*in, t).status().code(),
            absl::StatusCode::kInvalidArgument);  // 2e6 > 2^20 files
  t.topology.dp = 500000;
  EXPECT_TRUE(CheckZeroTarget(*in, t).ok());
  EXPECT_EQ(CheckZeroTarget(*in, At(*in, 3, 2)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ucp::IsUsageError(CheckZeroTarget(*in, At(*in, 3, 2)).status()));  // no AutoEP layers
}

// A sub_group_size small enough to cut a param group differently at the target is refused.
TEST(ZeroSink, RejectsADifferentSubGroupCut) {
  absl::StatusOr<ZeroSinkInput> in = ZeroSinkInputFromUcp(Ucp("s3_fp32_dp2"));
  ASSERT_TRUE(in.ok()) << in.status();
  formats::torch::ValueArena arena;
  Value* zero = arena.Dict();
  arena.SetItem(zero, "sub_group_size", arena.Int(100));
  Value* config = arena.Dict();
  arena.SetItem(config, "zero_optimization", zero);
  EXPECT_EQ(PlanZeroSink(*in, At(*in, 4, 0, config)).status().code(),
            absl::StatusCode::kUnimplemented);
  Value* big = arena.Dict();
  arena.SetItem(big, "sub_group_size", arena.Int(1000000));
  Value* config2 = arena.Dict();
  arena.SetItem(config2, "zero_optimization", big);
  EXPECT_TRUE(PlanZeroSink(*in, At(*in, 4, 0, config2)).ok());
}

// Both inputs read every stage; the sink refuses the crossings DeepSpeed cannot load.
TEST(ZeroSink, ReadsEveryStageAndRefusesCrossingZero3) {
  absl::StatusOr<ZeroSinkInput> ucp12 = ZeroSinkInputFromUcp(Ucp("s2_fp32_dp2"));
  ASSERT_TRUE(ucp12.ok()) << ucp12.status();
  EXPECT_EQ(ucp12->zero_stage, 2);
  absl::StatusOr<deepspeed::CheckpointIndex> index =
      deepspeed::OpenCheckpoint(Case("s3_fp32_dp2") + "/checkpoint");
  ASSERT_TRUE(index.ok()) << index.status();
  absl::StatusOr<ZeroSinkInput> zero3 = ZeroSinkInputFromIndex(*index);
  ASSERT_TRUE(zero3.ok()) << zero3.status();
  EXPECT_EQ(zero3->frozen.size(), 1u);
  ZeroTarget t = At(*zero3, 2);
  t.zero_stage = 2;
  EXPECT_EQ(PlanZeroSink(*zero3, t).status().code(), absl::StatusCode::kInvalidArgument);
  t = At(*ucp12, 2);
  t.zero_stage = 3;
  EXPECT_EQ(PlanZeroSink(*ucp12, t).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ZeroSinkInputFromUcp(Case("s3_fp32_dp2")).status().code(), absl::StatusCode::kNotFound);
}

// Floats of a tensor value.
std::vector<float> Floats(const TorchFile& f, const Value* v) {
  absl::StatusOr<Buffer> b = f.TensorBytes(v->tensor());
  EXPECT_TRUE(b.ok()) << b.status();
  std::vector<float> out(b->size() / sizeof(float));
  std::memcpy(out.data(), b->data(), b->size());
  return out;
}

// autoep_size 2 → 4 at dp 4: each rank holds one whole expert (expert-DP size 1) of every fused
// weight, so its expert sub-group is those rows of the UCP tensors, concatenated.
TEST(ZeroSink, ChangesAutoepSize) {
  absl::StatusOr<ZeroSinkInput> in = ZeroSinkInputFromUcp(Ucp(kAutoep));
  ASSERT_TRUE(in.ok()) << in.status();
  absl::StatusOr<Plan> plan = PlanZeroSink(*in, At(*in, 4, 4));
  ASSERT_TRUE(plan.ok()) << plan.status();
  const testutil::ScratchDir scratch;
  const fs::path& out = scratch.path();
  std::vector<const ByteSource*> sources;  // the input's files, then the plan's own bytes
  for (size_t i = 0; i < plan->sources.size(); ++i) {
    sources.push_back(static_cast<int>(i) < in->num_file_sources ? in->sources[i].get()
                                                                 : plan->sources[i].memory.get());
  }
  execute::ExecuteOptions options;
  options.threads = 1;
  options.fsync = false;
  ASSERT_TRUE(execute::ExecutePlan(*plan, sources, out.string(), options).ok());

  int expert_group = -1;
  for (size_t s = 0; s < in->groups.size(); ++s) {
    if (in->groups[s].expert) expert_group = static_cast<int>(s);
  }
  ASSERT_GE(expert_group, 0);
  for (int r = 0; r < 4; ++r) {
    SCOPED_TRACE(r);
    absl::StatusOr<TorchFile> model = TorchFile::OpenPath(
        (out / ("zero_pp_rank_" + std::to_string(r) + "_mp_rank_00_model_states.pt")).string());
    absl::StatusOr<TorchFile> optim = TorchFile::OpenPath(
        (out / ("zero_pp_rank_" + std::to_string(r) + "_mp_rank_00_optim_states.pt")).string());
    ASSERT_TRUE(model.ok()) << model.status();
    ASSERT_TRUE(optim.ok()) << optim.status();
    const Value* layer = model->root().Get("ds_autoep_layers")->items()[0];
    EXPECT_EQ(layer->Get("ep_size")->int_value(), 4);
    EXPECT_EQ(layer->Get("num_local_experts")->int_value(), 1);
    EXPECT_EQ(layer->Get("ep_rank")->int_value(), r);
    EXPECT_EQ(layer->Get("expert_data_parallel_world_size")->int_value(), 1);
    EXPECT_EQ(layer->Get("global_expert_start")->int_value(), r);
    const Value* osd = optim->root().Get("optimizer_state_dict");
    const Value* group = osd->Get("ds_zero_partition_groups")->items()[expert_group];
    EXPECT_EQ(group->Get("partition_count")->int_value(), 1);
    ASSERT_EQ(group->Get("partition_ranks")->items().size(), 1u);
    EXPECT_EQ(group->Get("partition_ranks")->items()[0]->int_value(), r);
    std::vector<float> expected;
    for (int p : in->groups[expert_group].params) {
      const SinkParam& param = in->params[p];
      absl::StatusOr<TorchFile> ucp =
          TorchFile::OpenPath(Ucp(kAutoep) + "/zero/" + param.name + "/fp32.pt");
      ASSERT_TRUE(ucp.ok()) << ucp.status();
      const std::vector<float> all = Floats(*ucp, ucp->root().Get("param"));
      const size_t row = all.size() / static_cast<size_t>(param.num_experts);
      expected.insert(expected.end(), all.begin() + r * row, all.begin() + (r + 1) * row);
    }
    EXPECT_EQ(Floats(*optim, osd->Get("fp32_flat_groups")->items()[expert_group]), expected);
  }
}

}  // namespace
}  // namespace ucp::converters::sinks
