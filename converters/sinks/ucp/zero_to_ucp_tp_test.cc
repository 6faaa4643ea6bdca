// Planner tests on the tensor-parallel fixtures (fixtures/tp, tp=2): the plan's files against
// DeepSpeed's own conversion, the copy operations of each merge rule, and the refusals.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/deepspeed/gather.h"
#include "converters/sinks/ucp/zero_to_ucp.h"
#include "gtest/gtest.h"

namespace ucp::converters::sinks {
namespace {
using plan::CopyOp;
using plan::FileRole;
using plan::Plan;
using plan::PlanFile;
using plan::PlanSource;
using plan::Region;

namespace fs = std::filesystem;
using deepspeed::CheckpointIndex;
using deepspeed::StateKind;

const char* const kTpCases[] = {"s1_fp32_tp2", "s2_bf16_tp2_dp2", "s2_fp32_tp2_dp2_subparams",
                                "s1_bf16_tp2_legacy_subparams"};

std::string TpCase(const std::string& name) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return absl::StrCat(root != nullptr ? root : ".", "/fixtures/tp/", name, "/checkpoint");
}

CheckpointIndex Open(const std::string& name) {
  absl::StatusOr<CheckpointIndex> index = deepspeed::OpenCheckpoint(TpCase(name) + "/global_step5");
  EXPECT_TRUE(index.ok()) << index.status();
  return *std::move(index);
}

const PlanFile* FindFile(const Plan& plan, const std::string& path) {
  for (const PlanFile& f : plan.files) {
    if (f.path == path) return &f;
  }
  return nullptr;
}

TEST(PlanZeroToUcpTpTest, FilesAndSizesMatchDeepSpeedsConversion) {
  for (const char* name : kTpCases) {
    SCOPED_TRACE(name);
    CheckpointIndex index = Open(name);
    EXPECT_EQ(index.topology.tp, 2);
    absl::StatusOr<Plan> plan = PlanZeroToUcp(index);
    ASSERT_TRUE(plan.ok()) << plan.status();
    const fs::path golden = TpCase(name) + "/global_step5_universal";
    size_t count = 0;
    for (const auto& e : fs::recursive_directory_iterator(golden)) {
      if (!e.is_regular_file()) continue;
      const std::string rel = fs::relative(e.path(), golden).generic_string();
      const PlanFile* f = FindFile(*plan, rel);
      ASSERT_NE(f, nullptr) << rel;
      ++count;
      // optimizer_state.pt: DeepSpeed's Python 3.11.2 re-save pickles ZeroStageEnum by name.
      if (rel != "zero/optimizer_state.pt") {
        EXPECT_EQ(f->size, e.file_size()) << rel;
      }
    }
    EXPECT_EQ(count, plan->files.size());
  }
}

TEST(PlanZeroToUcpTpTest, IndexHasOneSlicePerMpRank) {
  CheckpointIndex index = Open("s2_fp32_tp2_dp2_subparams");
  EXPECT_EQ(index.topology.mp(), 2);
  EXPECT_EQ(index.topology.dp, 2);
  EXPECT_EQ(index.optim_files.size(), 4u);
  const deepspeed::Parameter* qkv = index.FindParam("blocks.0.qkv.weight");
  ASSERT_NE(qkv, nullptr);
  ASSERT_EQ(qkv->slices.size(), 2u);
  EXPECT_EQ(qkv->slices[0].shape, Shape({7, 8}));  // uneven sub-param widths: 3+2+2 and 3+1+1 rows
  EXPECT_EQ(qkv->slices[1].shape, Shape({5, 8}));
  for (const deepspeed::ParamSlice& slice : qkv->slices) {
    int64_t numel = 0;
    for (const deepspeed::Fragment& f : slice.fragments) numel += f.numel;
    EXPECT_EQ(numel, *slice.shape.NumElements());
  }
}

TEST(PlanZeroToUcpTpTest, RowParallelCopiesOneRowPerRankInTurn) {
  CheckpointIndex index = Open("s1_fp32_tp2");
  absl::StatusOr<Plan> plan = PlanZeroToUcp(index);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const PlanFile* f =
      FindFile(*plan, "zero/blocks.0.fc2.weight/fp32.pt");  // [8, 6] per rank → [8, 12]
  ASSERT_NE(f, nullptr);
  const Region& r = f->regions[0];
  ASSERT_EQ(r.ops.size(), 16u);
  for (size_t i = 0; i < r.ops.size(); ++i) {
    EXPECT_EQ(r.ops[i].length, 6u * 4);
    EXPECT_EQ(r.ops[i].dest_offset, r.offset + i * 24);
    EXPECT_EQ(r.ops[i].source, index.optim_files[i % 2]);  // dp 1: one shard per mp rank
  }
  // Column parallel: one copy per rank.
  const PlanFile* col = FindFile(*plan, "zero/blocks.0.fc1.weight/exp_avg.pt");
  ASSERT_NE(col, nullptr);
  EXPECT_EQ(col->regions[0].ops.size(), 2u);
}

TEST(PlanZeroToUcpTpTest, VocabularyStorageKeepsThePaddingRows) {
  CheckpointIndex index = Open("s2_bf16_tp2_dp2");
  absl::StatusOr<Plan> plan = PlanZeroToUcp(index);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const PlanFile* f = FindFile(*plan, "zero/embed.weight/fp32.pt");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->frame->storages[0].size, 64u * 8 * 4);  // 2 x [32, 8], viewed as [61, 8]
  uint64_t bytes = 0;
  for (const CopyOp& op : f->regions[0].ops) bytes += op.length;
  EXPECT_EQ(bytes, 64u * 8 * 4);
}

TEST(PlanZeroToUcpTpTest, AveragedParamsAreComputedAsPythonSumThenDivide) {
  CheckpointIndex index = Open("s1_fp32_tp2");
  absl::StatusOr<Plan> plan = PlanZeroToUcp(index);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const PlanFile* f = FindFile(*plan, "zero/ln_f.weight/fp32.pt");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(f->regions[0].ops.size(), 1u);
  const CopyOp& op = f->regions[0].ops[0];
  ASSERT_GE(op.source, static_cast<int>(index.files.size()));
  const PlanSource& src = plan->sources[op.source];
  ASSERT_NE(src.memory, nullptr);
  ASSERT_EQ(src.size, 8u * 4);
  std::vector<float> mean(8);
  ASSERT_TRUE(
      src.memory->ReadAt(0, absl::MakeSpan(reinterpret_cast<std::byte*>(mean.data()), 32)).ok());
  const deepspeed::Parameter* p = index.FindParam("ln_f.weight");
  absl::StatusOr<Buffer> a = deepspeed::GatherState(index, *p, StateKind::kFp32, 0);
  absl::StatusOr<Buffer> b = deepspeed::GatherState(index, *p, StateKind::kFp32, 1);
  ASSERT_TRUE(a.ok() && b.ok());
  for (int i = 0; i < 8; ++i) {
    float x, y;
    std::memcpy(&x, a->data() + 4 * i, 4);
    std::memcpy(&y, b->data() + 4 * i, 4);
    const float want = ((0.0f + x) + y) / 2.0f;
    EXPECT_EQ(std::memcmp(&mean[i], &want, 4), 0) << i;
  }
  EXPECT_FALSE(
      std::signbit(mean[0]));  // -0.0 on both ranks → +0.0, as DeepSpeed's sum() starts at 0
}

TEST(PlanZeroToUcpTpTest, ReplicatedSlicesMustBeEqual) {
  CheckpointIndex index = Open("s1_fp32_tp2");
  deepspeed::Parameter& ln = index.params[index.param_by_name.at("blocks.0.ln.weight")];
  const deepspeed::Parameter& other =
      index.params[index.param_by_name.at("ln_f.weight")];  // same numel
  ln.slices[1].fragments[0].states[0] = other.slices[1].fragments[0].states[0];
  absl::StatusOr<Plan> plan = PlanZeroToUcp(index);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition) << plan.status();
  EXPECT_NE(plan.status().message().find("blocks.0.ln.weight"), std::string::npos);
}

TEST(PlanZeroToUcpTpTest, SlicesThatCannotMergeAreRefused) {
  CheckpointIndex index = Open("s1_fp32_tp2");
  index.params[index.param_by_name.at("blocks.0.fc1.weight")].slices[1].shape =
      Shape({8, 6});  // was [6, 8]
  absl::StatusOr<Plan> plan = PlanZeroToUcp(index);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition) << plan.status();
  EXPECT_NE(plan.status().message().find("blocks.0.fc1.weight"), std::string::npos);
}

TEST(PlanZeroToUcpTpTest, SubParamsNeedShardWidthsFromVersion04) {
  CheckpointIndex index = Open("s2_fp32_tp2_dp2_subparams");
  index.universal_checkpoint_info.sub_param_shard_widths = nullptr;
  absl::StatusOr<Plan> plan = PlanZeroToUcp(index);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition) << plan.status();
  EXPECT_NE(plan.status().message().find("sub_param_shard_widths"), std::string::npos);
}

TEST(PlanZeroToUcpTpTest, LegacySubParamSizesMustDivideByTp) {
  CheckpointIndex index = Open("s2_fp32_tp2_dp2_subparams");
  index.universal_checkpoint_info.version =
      0.3;  // then widths come from the tuple, split evenly: 6/3/3 over 2
  absl::StatusOr<Plan> plan = PlanZeroToUcp(index);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition)
      << plan.status();  // 3 % 2 != 0
}

}  // namespace
}  // namespace ucp::converters::sinks
