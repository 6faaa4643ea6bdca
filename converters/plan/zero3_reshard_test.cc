// PlanZero3Reshard on the fixture UCPs: plan shape, target validation, and an autoep_size change
// (no DeepSpeed golden exists for one) checked against the UCP's merged expert tensors.
#include "converters/plan/zero3_reshard.h"

#include <cstdlib>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "converters/deepspeed/checkpoint_index.h"
#include "converters/execute/executor.h"
#include "converters/plan/zero3_input.h"
#include "formats/base/scratch_dir_testutil.h"
#include "formats/torch/torch_file.h"
#include "gtest/gtest.h"

namespace ucp::converters::plan {
namespace {

namespace fs = std::filesystem;
using formats::torch::TorchFile;
using formats::torch::Value;

std::string Case(const std::string& name) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return std::string(root != nullptr ? root : ".") + "/fixtures/deepspeed/" + name;
}
std::string Ucp(const std::string& name) { return Case(name) + "/checkpoint/global_step5_universal"; }

constexpr char kAutoep[] = "autoep_qwen3_s3_fp32_dp4_ep2";

TEST(Zero3Reshard, PlansOneModelAndOneOptimizerFilePerRank) {
  absl::StatusOr<Zero3Input> in = Zero3InputFromUcp(Ucp("s3_fp32_dp2"));
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->source_dp, 2);
  EXPECT_EQ(in->sub_groups.size(), 2u);
  EXPECT_EQ(in->params.size(), 16u);
  ASSERT_EQ(in->frozen.size(), 1u);
  EXPECT_EQ(in->frozen[0].name, "pos");
  absl::StatusOr<Plan> plan = PlanZero3Reshard(*in, Zero3Target{.dp = 4});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->files.size(), 8u);
  EXPECT_EQ(plan->files[0].path, "zero_pp_rank_0_mp_rank_00_model_states.pt");
  EXPECT_EQ(plan->files[7].path, "zero_pp_rank_3_mp_rank_00_optim_states.pt");
  // head_bias (61 elements) over 4 ranks leaves 3 padding elements: the zero source exists.
  EXPECT_EQ(plan->sources.back().path, "<zeros>");
  EXPECT_EQ(plan->sources.back().size, 3u * 4u);
  EXPECT_EQ(plan->info.dp_size, 4);
}

TEST(Zero3Reshard, RejectsBadTargets) {
  absl::StatusOr<Zero3Input> dense = Zero3InputFromUcp(Ucp("s3_fp32_dp2"));
  absl::StatusOr<Zero3Input> moe = Zero3InputFromUcp(Ucp(kAutoep));
  ASSERT_TRUE(dense.ok()) << dense.status();
  ASSERT_TRUE(moe.ok()) << moe.status();
  EXPECT_EQ(moe->source_ep, 2);
  EXPECT_EQ(PlanZero3Reshard(*dense, Zero3Target{.dp = 0}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanZero3Reshard(*dense, Zero3Target{.dp = 2, .ep = 2}).status().code(),
            absl::StatusCode::kInvalidArgument);  // no AutoEP layers
  EXPECT_EQ(PlanZero3Reshard(*moe, Zero3Target{.dp = 3}).status().code(),
            absl::StatusCode::kInvalidArgument);  // 3 is not a multiple of ep 2
  EXPECT_EQ(PlanZero3Reshard(*moe, Zero3Target{.dp = 6, .ep = 3}).status().code(),
            absl::StatusCode::kInvalidArgument);  // 4 experts over 3 EP ranks
}

// A sub_group_size small enough to cut a param group differently at the target is refused.
TEST(Zero3Reshard, RejectsADifferentSubGroupCut) {
  absl::StatusOr<Zero3Input> in = Zero3InputFromUcp(Ucp("s3_fp32_dp2"));
  ASSERT_TRUE(in.ok()) << in.status();
  formats::torch::ValueArena arena;
  Value* zero = arena.Dict();
  arena.SetItem(zero, "sub_group_size", arena.Int(100));
  Value* config = arena.Dict();
  arena.SetItem(config, "zero_optimization", zero);
  EXPECT_EQ(PlanZero3Reshard(*in, Zero3Target{.dp = 4, .ds_config = config}).status().code(),
            absl::StatusCode::kUnimplemented);
  Value* big = arena.Dict();
  arena.SetItem(big, "sub_group_size", arena.Int(1000000));
  Value* config2 = arena.Dict();
  arena.SetItem(config2, "zero_optimization", big);
  EXPECT_TRUE(PlanZero3Reshard(*in, Zero3Target{.dp = 4, .ds_config = config2}).ok());
}

TEST(Zero3Reshard, RejectsOtherStages) {
  EXPECT_EQ(Zero3InputFromUcp(Ucp("s2_fp32_dp2")).status().code(), absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<deepspeed::CheckpointIndex> index = deepspeed::OpenCheckpoint(Case("s2_fp32_dp2") + "/checkpoint");
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(Zero3InputFromIndex(*index).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Zero3InputFromUcp(Case("s3_fp32_dp2")).status().code(), absl::StatusCode::kNotFound);
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
TEST(Zero3Reshard, ChangesAutoepSize) {
  absl::StatusOr<Zero3Input> in = Zero3InputFromUcp(Ucp(kAutoep));
  ASSERT_TRUE(in.ok()) << in.status();
  absl::StatusOr<Plan> plan = PlanZero3Reshard(*in, Zero3Target{.dp = 4, .ep = 4});
  ASSERT_TRUE(plan.ok()) << plan.status();
  const testutil::ScratchDir scratch;
  const fs::path& out = scratch.path();
  std::vector<const ByteSource*> sources;
  for (const auto& f : in->files) sources.push_back(&f->zip().source());
  for (size_t i = sources.size(); i < plan->sources.size(); ++i) sources.push_back(plan->sources[i].memory.get());
  execute::ExecuteOptions options;
  options.threads = 1;
  options.fsync = false;
  ASSERT_TRUE(execute::ExecutePlan(*plan, sources, out.string(), options).ok());

  int expert_group = -1;
  for (size_t s = 0; s < in->sub_groups.size(); ++s) {
    if (in->sub_groups[s].expert) expert_group = static_cast<int>(s);
  }
  ASSERT_GE(expert_group, 0);
  for (int r = 0; r < 4; ++r) {
    SCOPED_TRACE(r);
    absl::StatusOr<TorchFile> model =
        TorchFile::OpenPath((out / ("zero_pp_rank_" + std::to_string(r) + "_mp_rank_00_model_states.pt")).string());
    absl::StatusOr<TorchFile> optim =
        TorchFile::OpenPath((out / ("zero_pp_rank_" + std::to_string(r) + "_mp_rank_00_optim_states.pt")).string());
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
    for (int p : in->sub_groups[expert_group].params) {
      const Zero3Param& param = in->params[p];
      absl::StatusOr<TorchFile> ucp = TorchFile::OpenPath(Ucp(kAutoep) + "/zero/" + param.name + "/fp32.pt");
      ASSERT_TRUE(ucp.ok()) << ucp.status();
      const std::vector<float> all = Floats(*ucp, ucp->root().Get("param"));
      const size_t row = all.size() / static_cast<size_t>(param.num_experts);
      expected.insert(expected.end(), all.begin() + r * row, all.begin() + (r + 1) * row);
    }
    EXPECT_EQ(Floats(*optim, osd->Get("fp32_flat_groups")->items()[expert_group]), expected);
  }
}

}  // namespace
}  // namespace ucp::converters::plan
