#include "formats/deepspeed/file_names.h"

#include <filesystem>
#include <fstream>

#include "formats/deepspeed/deepspeed_testutil.h"
#include "gtest/gtest.h"

namespace ucp::formats::deepspeed {
namespace {

TEST(ParseFileName, OptimizerShards) {
  auto f = ParseFileName("zero_pp_rank_12_mp_rank_03_optim_states.pt");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, FileKind::kOptimStates);
  EXPECT_EQ(f->dp_rank, 12);
  EXPECT_EQ(f->mp_rank, 3);
  EXPECT_EQ(f->shard_prefix, "");
  f = ParseFileName("bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->shard_prefix, "bf16_");
  f = ParseFileName("fp16_zero_pp_rank_1_mp_rank_100_optim_states.pt");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->shard_prefix, "fp16_");
  EXPECT_EQ(f->mp_rank, 100);
  f = ParseFileName("zero_pp_rank_1_mp_rank_00optim_states.pt");  // old name without '_'
  ASSERT_TRUE(f.has_value());
  EXPECT_TRUE(f->legacy_optim_suffix);
  f = ParseFileName("expp_rank_2_mp_rank_00_optim_states.pt");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, FileKind::kExpertOptimStates);
  EXPECT_EQ(f->ep_rank, 2);
}

TEST(ParseFileName, ModelStates) {
  auto f = ParseFileName("mp_rank_01_model_states.pt");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, FileKind::kModelStates);
  EXPECT_EQ(f->mp_rank, 1);
  f = ParseFileName("zero_pp_rank_3_mp_rank_00_model_states.pt");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, FileKind::kZeroModelStates);
  EXPECT_EQ(f->dp_rank, 3);
  f = ParseFileName("layer_1_expert_2_mp_rank_03_model_states.pt");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, FileKind::kExpertModelStates);
  EXPECT_EQ(f->layer, 1);
  EXPECT_EQ(f->expert, 2);
  EXPECT_EQ(f->mp_rank, 3);
  f = ParseFileName("expert_5_mp_rank_00_model_states.pt");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, FileKind::kLegacyExpertModelStates);
  f = ParseFileName("layer_07-model_01-model_states.pt");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, FileKind::kPipelineLayer);
  EXPECT_EQ(f->layer, 7);
  EXPECT_EQ(f->tp_rank, 1);
  f = ParseFileName("layer_07-model_states.pt");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->tp_rank, -1);
}

TEST(ParseFileName, RejectsOtherNames) {
  for (const char* name :
       {"latest", "zero_to_fp32.py", "mp_rank__model_states.pt", "mp_rank_0x_model_states.pt",
        "zero_pp_rank_-1_mp_rank_00_optim_states.pt",
        "zero_pp_rank_12345678_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt.tmp", "bf16_mp_rank_00_model_states.pt",
        "xzero_pp_rank_1_mp_rank_00_optim_states.pt", "layer_1_expert_2_model_states.pt",
        "fp32.pt"}) {
    EXPECT_FALSE(ParseFileName(name).has_value()) << name;
  }
}

TEST(ResolveCheckpointDir, LatestTagAndTagFolder) {
  testing::ScratchDir scratch;
  const auto tag = scratch.CopyTag("s1_fp32_dp2");
  {
    std::ofstream latest(scratch.path() / "latest");
    latest << "global_step5\n";
  }
  auto from_root = ResolveCheckpointDir(scratch.path().string(), "");
  ASSERT_TRUE(from_root.ok()) << from_root.status();
  EXPECT_EQ(from_root->tag, "global_step5");
  EXPECT_EQ(from_root->tag_dir, tag.string());
  auto from_tag = ResolveCheckpointDir(tag.string(), "");
  ASSERT_TRUE(from_tag.ok()) << from_tag.status();
  EXPECT_EQ(from_tag->tag, "global_step5");
  EXPECT_EQ(ResolveCheckpointDir(scratch.path().string(), "global_step9").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ResolveCheckpointDir(scratch.path().string(), "../x").status().code(),
            absl::StatusCode::kInvalidArgument);
  {
    std::ofstream latest(scratch.path() / "latest");
    latest << "global_step7";
  }
  auto missing = ResolveCheckpointDir(scratch.path().string(), "");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("global_step7"), std::string::npos);
  std::filesystem::remove(scratch.path() / "latest");
  auto no_latest = ResolveCheckpointDir(scratch.path().string(), "");
  EXPECT_EQ(no_latest.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(no_latest.status().message().find("pass a tag, one of: global_step5"),
            std::string::npos)
      << no_latest.status();
}

}  // namespace
}  // namespace ucp::formats::deepspeed
