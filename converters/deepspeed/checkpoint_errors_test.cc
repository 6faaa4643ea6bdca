// Hostile and broken checkpoint folders: scratch copies of the fixtures with a shard deleted,
// replaced by one of another run, renamed, truncated, or joined by files the index does not
// support. Every error must say what is wrong and name the file.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "converters/deepspeed/checkpoint_index.h"
#include "formats/deepspeed/deepspeed_testutil.h"
#include "gtest/gtest.h"

namespace ucp::converters::deepspeed {
namespace {

namespace fs = std::filesystem;
using formats::deepspeed::testing::FixtureCase;
using formats::deepspeed::testing::ScratchDir;

constexpr const char* kShard0 = "zero_pp_rank_0_mp_rank_00_optim_states.pt";
constexpr const char* kShard1 = "zero_pp_rank_1_mp_rank_00_optim_states.pt";

fs::path CaseFile(const std::string& name, const std::string& file,
                  const std::string& tag = "checkpoint/global_step5") {
  return fs::path(FixtureCase(name)) / tag / file;
}

void Replace(const fs::path& target, const fs::path& source) {
  fs::copy_file(source, target, fs::copy_options::overwrite_existing);
}

// Expects OpenCheckpoint(dir) to fail with `code` and a message containing every `parts` entry.
void ExpectError(const fs::path& dir, absl::StatusCode code,
                 std::initializer_list<std::string> parts) {
  absl::StatusOr<CheckpointIndex> index = OpenCheckpoint(dir.string());
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), code) << index.status();
  for (const std::string& part : parts) {
    EXPECT_NE(index.status().message().find(part), std::string::npos)
        << "'" << part << "' not in: " << index.status();
  }
}

TEST(MissingFiles, ShardOfAMiddleRank) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s1_fp32_dp4");
  fs::remove(tag / "zero_pp_rank_2_mp_rank_00_optim_states.pt");
  ExpectError(tag, absl::StatusCode::kNotFound,
              {"zero_pp_rank_2_mp_rank_00_optim_states.pt", "dp rank 2 (of 4)"});
}

TEST(MissingFiles, ShardOfTheLastRank) {
  // Nothing after it says it is missing but dp_world_size in the model file.
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s2_fp32_dp4");
  fs::remove(tag / "zero_pp_rank_3_mp_rank_00_optim_states.pt");
  ExpectError(tag, absl::StatusCode::kNotFound,
              {"zero_pp_rank_3_mp_rank_00_optim_states.pt", "dp rank 3 (of 4)"});
}

TEST(MissingFiles, Bf16Shard) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s1_bf16opt_dp4");
  fs::remove(tag / "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt");
  ExpectError(tag, absl::StatusCode::kNotFound, {"bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt"});
}

TEST(MissingFiles, ZeroThreeModelStates) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s3_fp32_dp4");
  fs::remove(tag / "zero_pp_rank_2_mp_rank_00_model_states.pt");
  ExpectError(tag, absl::StatusCode::kNotFound, {"zero_pp_rank_2_mp_rank_00_model_states.pt"});
}

TEST(MissingFiles, ModelStates) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s2_fp32_dp2");
  fs::remove(tag / "mp_rank_00_model_states.pt");
  ExpectError(tag, absl::StatusCode::kNotFound, {"mp_rank_00_model_states.pt"});
}

TEST(MissingFiles, NoOptimizerShardsIsZeroStageZero) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s1_fp32_dp2");
  fs::remove(tag / kShard0);
  fs::remove(tag / kShard1);
  // Read as ZeRO-0 (zero0_index.cc), whose model file would hold the optimizer state.
  ExpectError(tag, absl::StatusCode::kFailedPrecondition, {"ZeRO-0", "'optimizer' is None"});
}

TEST(MixedShards, ShardOfALargerWorld) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s1_fp32_dp2");
  Replace(tag / kShard1, CaseFile("s1_fp32_dp4", kShard1));
  ExpectError(tag, absl::StatusCode::kFailedPrecondition,
              {kShard1, "partition_count[0] is 4, expected 2"});
}

TEST(MixedShards, ExtraRank) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s1_fp32_dp2");
  fs::copy_file(CaseFile("s1_fp32_dp4", "zero_pp_rank_2_mp_rank_00_optim_states.pt"),
                tag / "zero_pp_rank_2_mp_rank_00_optim_states.pt");
  ExpectError(tag, absl::StatusCode::kFailedPrecondition,
              {"zero_pp_rank_2_mp_rank_00_optim_states.pt", "dp_world_size 2"});
}

TEST(MixedShards, ShardOfAnotherStage) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s1_fp32_dp2");
  Replace(tag / kShard1, CaseFile("s2_fp32_dp2", kShard1));
  ExpectError(tag, absl::StatusCode::kFailedPrecondition,
              {"mixed optimizer shards", kShard1, "ZeRO-2"});
}

TEST(MixedShards, ShardOfAnotherModel) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s2_fp32_dp4");
  Replace(tag / kShard1, CaseFile("autoep_mixtral_s2_fp32_dp4_ep2", kShard1));
  absl::StatusOr<CheckpointIndex> index = OpenCheckpoint(tag.string());
  ASSERT_FALSE(index.ok());
  EXPECT_NE(index.status().message().find(kShard1), std::string::npos) << index.status();
}

TEST(MixedShards, RankZeroCopiedAsRankOne) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s2_fp32_dp2");
  Replace(tag / kShard1, tag / kShard0);
  ExpectError(tag, absl::StatusCode::kDataLoss, {kShard1, "param_slice_mappings[0]"});
}

TEST(MixedShards, ShardOfALaterStep) {
  // The resumed run saved the same layout (dp 2) three steps later: only the steps differ.
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s1_fp32_dp2");
  Replace(tag / kShard1, CaseFile("s1_fp32_dp4", kShard1, "resume_dp2/checkpoint/global_step8"));
  ExpectError(tag, absl::StatusCode::kFailedPrecondition,
              {"disagree on the step of param group 0", kShard1});
}

TEST(MixedShards, ZeroThreeModelStatesOfAnotherTag) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s3_fp32_dp2");
  const char* model1 = "zero_pp_rank_1_mp_rank_00_model_states.pt";
  Replace(tag / model1, CaseFile("s3_fp32_dp4", model1, "resume_dp2/checkpoint/global_step8"));
  ExpectError(tag, absl::StatusCode::kFailedPrecondition,
              {"mixed checkpoint", model1, "global_steps"});
}

TEST(MixedShards, ZeroThreeShardOfALargerWorld) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s3_fp32_dp2");
  Replace(tag / kShard1, CaseFile("s3_fp32_dp4", kShard1));
  ExpectError(tag, absl::StatusCode::kFailedPrecondition, {kShard1, "partition_count is 4"});
}

TEST(MixedShards, AutoEpZeroThreeRanksSwapped) {
  // Rank 1's and rank 2's files swapped: their EP coordinates no longer match the DP ranks.
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("autoep_qwen3_s3_fp32_dp4_ep2");
  for (const char* kind : {"model", "optim"}) {
    const fs::path a = tag / absl::StrCat("zero_pp_rank_1_mp_rank_00_", kind, "_states.pt");
    const fs::path b = tag / absl::StrCat("zero_pp_rank_2_mp_rank_00_", kind, "_states.pt");
    fs::rename(a, tag / "tmp");
    fs::rename(b, a);
    fs::rename(tag / "tmp", b);
  }
  ExpectError(tag, absl::StatusCode::kFailedPrecondition,
              {"zero_pp_rank_1_mp_rank_00_model_states.pt", "ep_rank"});
}

TEST(MixedShards, MixedShardPrefixes) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s1_fp32_dp2");
  fs::rename(tag / kShard1, tag / (std::string("bf16_") + kShard1));
  ExpectError(tag, absl::StatusCode::kFailedPrecondition, {"mixed optimizer shard names"});
}

TEST(MixedShards, DuplicateRank) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s1_fp32_dp2");
  fs::copy_file(tag / kShard1, tag / "zero_pp_rank_01_mp_rank_00_optim_states.pt");
  ExpectError(tag, absl::StatusCode::kFailedPrecondition, {"two files for mp rank 0, dp rank 1"});
}

// Issue 16.2: a model-states file from a later step of a run at the same dp (s1_fp32_dp4 resumed
// at dp 2 saved step 8) beside step-5 optimizer shards; one of a ZeRO-1 run beside ZeRO-2 shards.
constexpr const char* kModel = "mp_rank_00_model_states.pt";

TEST(ModelStatesOfAnotherRun, LaterStepZeroOne) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s1_fp32_dp2");
  Replace(tag / kModel, CaseFile("s1_fp32_dp4", kModel, "resume_dp2/checkpoint/global_step8"));
  ExpectError(tag, absl::StatusCode::kFailedPrecondition,
              {"another step", (tag / kModel).string(), "global_steps 8", "step 5",
               (tag / kShard0).string()});
}

TEST(ModelStatesOfAnotherRun, LaterStepZeroTwo) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s2_fp32_dp2");
  Replace(tag / kModel, CaseFile("s2_fp32_dp4", kModel, "resume_dp2/checkpoint/global_step8"));
  ExpectError(tag, absl::StatusCode::kFailedPrecondition,
              {kModel, "global_steps 8", "step 5", kShard0});
}

TEST(ModelStatesOfAnotherRun, LaterStepZeroThree) {
  // Every rank's model states from the step-8 save (they agree with each other).
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s3_fp32_dp2");
  for (const char* model :
       {"zero_pp_rank_0_mp_rank_00_model_states.pt", "zero_pp_rank_1_mp_rank_00_model_states.pt"}) {
    Replace(tag / model, CaseFile("s3_fp32_dp4", model, "resume_dp2/checkpoint/global_step8"));
  }
  ExpectError(tag, absl::StatusCode::kFailedPrecondition,
              {"zero_pp_rank_0_mp_rank_00_model_states.pt", "global_steps 8", "step 5", kShard0});
}

TEST(ModelStatesOfAnotherRun, ZeroOneModelBesideZeroTwoShards) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s2_fp32_dp2");
  Replace(tag / kModel, CaseFile("s1_fp32_dp2", kModel));
  ExpectError(
      tag, absl::StatusCode::kFailedPrecondition,
      {"another run", (tag / kModel).string(), "stage 1", (tag / kShard0).string(), "ZeRO-2"});
}

TEST(ModelStatesOfAnotherRun, ZeroTwoModelBesideZeroOneShards) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s1_fp32_dp2");
  Replace(tag / kModel, CaseFile("s2_fp32_dp2", kModel));
  ExpectError(tag, absl::StatusCode::kFailedPrecondition, {kModel, "stage 2", kShard0, "ZeRO-1"});
}

TEST(ModelStatesOfAnotherRun, DeepSpeedsOwnResumesStillOpen) {
  // DeepSpeed's ZeRO-3 universal load counts the UCP's step again: step 11 at global step 8. A
  // step above global_steps - skipped_steps is DeepSpeed's own doing, not a mixed folder.
  for (const char* name : {"s3_fp32_dp4", "s1_bf16opt_dp4", "autoep_mixtral_s3_fp32_dp4_ep2"}) {
    const std::string dir = FixtureCase(name) + "/resume_dp2" +
                            (std::string(name).find("autoep") == 0 ? "_ep1" : "") + "/checkpoint";
    absl::StatusOr<CheckpointIndex> index = OpenCheckpoint(dir);
    EXPECT_TRUE(index.ok()) << name << ": " << index.status();
  }
}

TEST(CorruptFiles, TruncatedShard) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s2_fp32_dp2");
  fs::resize_file(tag / kShard1, fs::file_size(tag / kShard1) / 2);
  ExpectError(tag, absl::StatusCode::kDataLoss, {kShard1});
}

TEST(CorruptFiles, ZeroByteShard) {
  // Issue 16.12: a file cut to nothing is damage (DataLoss, CorruptCheckpointError in Python).
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s2_fp32_dp2");
  fs::resize_file(tag / kShard1, 0);
  ExpectError(tag, absl::StatusCode::kDataLoss, {(tag / kShard1).string(), "0 bytes"});
}

TEST(CorruptFiles, FifoNamedLikeAShard) {
  // Issue 16.1: refused by name without blocking (opened O_NONBLOCK, then fstat).
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s2_fp32_dp2");
  fs::remove(tag / kShard1);
  ASSERT_EQ(::mkfifo((tag / kShard1).c_str(), 0600), 0);
  ExpectError(tag, absl::StatusCode::kInvalidArgument,
              {(tag / kShard1).string(), "not a regular file"});
}

TEST(CorruptFiles, NotAZipFile) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s3_fp32_dp2");
  std::ofstream(tag / "zero_pp_rank_1_mp_rank_00_model_states.pt", std::ios::trunc)
      << "not a torch file";
  absl::StatusOr<CheckpointIndex> index = OpenCheckpoint(tag.string());
  ASSERT_FALSE(index.ok());
  EXPECT_NE(index.status().message().find("zero_pp_rank_1_mp_rank_00_model_states.pt"),
            std::string::npos)
      << index.status();
}

TEST(CorruptFiles, ModelStatesInAnOptimizerShardName) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s1_fp32_dp2");
  Replace(tag / kShard1, tag / "mp_rank_00_model_states.pt");
  ExpectError(tag, absl::StatusCode::kDataLoss, {kShard1, "optimizer_state_dict"});
}

TEST(Unsupported, UnknownCheckpointFileName) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s1_fp32_dp2");
  fs::copy_file(tag / kShard1, tag / "foo_optim_states.pt");
  ExpectError(tag, absl::StatusCode::kInvalidArgument, {"foo_optim_states.pt"});
}

TEST(Unsupported, PipelineLayerFiles) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s1_fp32_dp2");
  fs::copy_file(tag / "mp_rank_00_model_states.pt", tag / "layer_01-model_00-model_states.pt");
  ExpectError(tag, absl::StatusCode::kUnimplemented,
              {"layer_01-model_00-model_states.pt", "pipeline"});
}

TEST(Unsupported, NvmeOffload) {
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s1_fp32_dp2");
  fs::create_directories(tag / "offloaded_tensors" / "rank00");
  ExpectError(tag, absl::StatusCode::kUnimplemented, {"offloaded_tensors"});
}

TEST(Unsupported, ExpertFilesWithoutAutoEpMetadata) {
  // Expert files next to a model file without ds_autoep_layers: native DeepSpeed MoE.
  ScratchDir scratch;
  fs::path tag = scratch.CopyTag("s2_fp32_dp2");
  fs::copy_file(
      CaseFile("autoep_mixtral_s2_fp32_dp4_ep2", "layer_0_expert_0_mp_rank_00_model_states.pt"),
      tag / "layer_0_expert_0_mp_rank_00_model_states.pt");
  ExpectError(tag, absl::StatusCode::kUnimplemented, {"native DeepSpeed MoE"});
}

TEST(Directories, RootWithoutLatest) {
  ScratchDir scratch;
  scratch.CopyTag("s1_fp32_dp2");
  ExpectError(scratch.path(), absl::StatusCode::kNotFound, {"no 'latest' file", "global_step5"});
}

TEST(Directories, Missing) {
  ExpectError("/nonexistent/ucp/checkpoint", absl::StatusCode::kNotFound,
              {"/nonexistent/ucp/checkpoint"});
}

}  // namespace
}  // namespace ucp::converters::deepspeed
