// Planner tests: plans are computed from the index (zip directories and pickles) and checked
// without executing a single copy: file set, sizes and pickles against DeepSpeed's own UCP, op
// tiling, and the planner's refusals on edited indexes.
#include "converters/sinks/ucp/zero_to_ucp.h"

#include <filesystem>
#include <set>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "formats/deepspeed/deepspeed_testutil.h"
#include "formats/torch/torch_file.h"
#include "gtest/gtest.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::sinks {
namespace {
using plan::CopyOp;
using plan::FileRole;
using plan::Plan;
using plan::PlanFile;
using plan::PlanSource;
using plan::Region;
using plan::Summary;
using plan::ToJson;
using plan::ValidatePlan;

namespace fs = std::filesystem;
using formats::deepspeed::testing::FixtureCase;

const char* const kCases[] = {"s1_fp32_dp2",
                              "s1_fp32_dp4",
                              "s1_bf16opt_dp4",
                              "s2_fp32_dp2",
                              "s2_fp32_dp4",
                              "s2_bf16_dp2",
                              "s3_fp32_dp2",
                              "s3_fp32_dp4",
                              "s3_fp32_1group_dp4",
                              "autoep_mixtral_s2_fp32_dp4_ep2",
                              "autoep_qwen3_s3_fp32_dp4_ep2",
                              "autoep_mixtral_s2_bf16_dp4_ep2",
                              "s3_bf16_dp1",
                              "s3_bf16_dp2",
                              "s3_bf16_dp4",
                              "s1_bf16_dp2"};

deepspeed::CheckpointIndex Open(const std::string& name) {
  absl::StatusOr<deepspeed::CheckpointIndex> index =
      deepspeed::OpenCheckpoint(FixtureCase(name) + "/checkpoint/global_step5");
  EXPECT_TRUE(index.ok()) << index.status();
  return *std::move(index);
}

// Relative path → size of every file of DeepSpeed's UCP for `name`.
absl::flat_hash_map<std::string, uint64_t> Expected(const std::string& name) {
  absl::flat_hash_map<std::string, uint64_t> out;
  const fs::path root = FixtureCase(name) + "/checkpoint/global_step5_universal";
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_regular_file()) out[fs::relative(e.path(), root).generic_string()] = e.file_size();
  }
  return out;
}

class PlanFixtureTest : public ::testing::TestWithParam<const char*> {};

TEST_P(PlanFixtureTest, SameFilesAsDeepSpeedAndParamFilesAreByteExact) {
  const std::string name = GetParam();
  deepspeed::CheckpointIndex index = Open(name);
  absl::StatusOr<Plan> plan = PlanZeroToUcp(index);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(ValidatePlan(*plan).ok());
  const absl::flat_hash_map<std::string, uint64_t> expected = Expected(name);
  std::set<std::string> planned, wanted;
  for (const auto& [path, size] : expected) wanted.insert(path);
  for (const PlanFile& f : plan->files) {
    planned.insert(f.path);
    auto it = expected.find(f.path);
    if (it == expected.end()) continue;
    if (f.role == FileRole::kParamState || f.role == FileRole::kStep ||
        f.role == FileRole::kModelCopy) {
      EXPECT_EQ(f.size, it->second)
          << name << " " << f.path;  // byte-identical files have equal sizes
    }
    if (f.role == FileRole::kParamState) {
      // data.pkl as DeepSpeed's torch.save wrote it.
      absl::StatusOr<formats::torch::TorchFile> tf = formats::torch::TorchFile::OpenPath(
          FixtureCase(name) + "/checkpoint/global_step5_universal/" + f.path);
      ASSERT_TRUE(tf.ok());
      const formats::zip::ZipEntry* pkl = tf->zip().Find(tf->archive_root() + "/data.pkl");
      ASSERT_NE(pkl, nullptr);
      absl::StatusOr<Buffer> bytes = tf->zip().Read(*pkl);
      ASSERT_TRUE(bytes.ok());
      EXPECT_EQ(f.frame->pickle, bytes->AsStringView()) << name << " " << f.path;
    }
  }
  EXPECT_EQ(planned, wanted) << name;
  EXPECT_EQ(plan->info.zero_stage, index.kind.zero_stage);
  EXPECT_EQ(plan->info.params, static_cast<int>(index.params.size()));
  EXPECT_GT(plan->CopyBytes(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PlanFixtureTest, ::testing::ValuesIn(kCases));

TEST(PlanZeroToUcpTest, OpsReadFragmentsInShardOrder) {
  deepspeed::CheckpointIndex index = Open("s2_fp32_dp4");
  absl::StatusOr<Plan> plan = PlanZeroToUcp(index);
  ASSERT_TRUE(plan.ok());
  // Every param-state op reads the fragment the index located, and the fragments of a param come
  // from increasing DP ranks.
  for (const PlanFile& f : plan->files) {
    if (f.role != FileRole::kParamState) continue;
    int last_source = -1;
    for (const CopyOp& op : f.regions[0].ops) {
      EXPECT_GT(op.source, last_source) << f.path;
      last_source = op.source;
    }
  }
}

TEST(PlanZeroToUcpTest, MissingUniversalInfoNeedsInject) {
  deepspeed::CheckpointIndex index = Open("s1_fp32_dp2");
  index.universal_checkpoint_info = {};
  absl::StatusOr<Plan> plan = PlanZeroToUcp(index);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(plan.status().message().find("mp_rank_00_model_states.pt"), std::string::npos)
      << plan.status();
  EXPECT_TRUE(PlanZeroToUcp(index, {.inject_missing_state = true}).ok());
}

TEST(PlanZeroToUcpTest, UnusedPatternsFailOnlyInStrictMode) {
  deepspeed::CheckpointIndex index = Open("s2_fp32_dp2");
  index.universal_checkpoint_info.tp_replicated_patterns = {"no_such_param"};
  index.universal_checkpoint_info.row_parallel_patterns = {R"(blocks\.0\.fc2\.weight)"};
  absl::StatusOr<Plan> plan = PlanZeroToUcp(index);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(plan.status().message().find("no_such_param"), std::string::npos);
  plan = PlanZeroToUcp(index, {.strict = false});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->info.notes.size(), 1u);
  for (const PlanFile& f : plan->files) {
    if (f.path == "zero/blocks.0.fc2.weight/fp32.pt") {
      EXPECT_NE(f.frame->pickle.find("cat_dim"), std::string::npos);
      EXPECT_EQ(f.frame->pickle.find(std::string("K\x01", 2)),
                f.frame->pickle.find("cat_dim") + 9);  // cat_dim: 1
    }
  }
}

TEST(PlanZeroToUcpTest, ParamNamesThatEscapeAreRefused) {
  deepspeed::CheckpointIndex index = Open("s3_fp32_dp2");
  index.params[0].name = "../../etc";
  absl::StatusOr<Plan> plan = PlanZeroToUcp(index);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PlanZeroToUcpTest, TensorParallelZero3IsUnimplemented) {
  deepspeed::CheckpointIndex index = Open("s3_fp32_dp2");
  index.topology.tp = 2;
  EXPECT_EQ(PlanZeroToUcp(index).status().code(), absl::StatusCode::kUnimplemented);
}

TEST(PlanZeroToUcpTest, SummaryAndJsonDescribeTheCheckpoint) {
  deepspeed::CheckpointIndex index = Open("autoep_mixtral_s2_fp32_dp4_ep2");
  absl::StatusOr<Plan> plan = PlanZeroToUcp(index);
  ASSERT_TRUE(plan.ok());
  const std::string summary = Summary(*plan);
  EXPECT_NE(summary.find("ZeRO-2"), std::string::npos) << summary;
  EXPECT_NE(summary.find("AutoEP ep=2 (2 layers)"), std::string::npos) << summary;
  EXPECT_NE(summary.find("6 fused expert weights"), std::string::npos) << summary;
  const nlohmann::json j = ToJson(*plan, true);
  EXPECT_EQ(j["info"]["dp_size"], 4);
  EXPECT_EQ(j["files"].size(), plan->files.size());
  EXPECT_EQ(j["num_ops"], plan->NumOps());
  EXPECT_TRUE(j["files"][0]["regions"][0].contains("ops"));
}

}  // namespace
}  // namespace ucp::converters::sinks
