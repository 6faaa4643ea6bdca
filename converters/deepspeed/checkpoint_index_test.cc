// CheckpointIndex over every real DeepSpeed fixture (fixtures/deepspeed): the strongest check is
// that gathering each parameter's fp32 / exp_avg / exp_avg_sq from the index's fragments gives,
// bit for bit, what DeepSpeed's own ds_to_universal.py wrote to global_step5_universal/zero/. The
// reshard goldens (the same state saved at another topology) must gather to the same values.
#include "converters/deepspeed/checkpoint_index.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/deepspeed/gather.h"
#include "formats/base/byte_source.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/deepspeed_testutil.h"
#include "gtest/gtest.h"

namespace ucp::converters::deepspeed {
using formats::torch::Value;
namespace keys = formats::deepspeed::keys;
namespace {

namespace fs = std::filesystem;
using formats::deepspeed::testing::FixtureCase;
using formats::torch::TensorRef;
using formats::torch::ValueKind;

struct CaseInfo {
  const char* name;
  int stage;
  OptimizerWrapper wrapper;
  int dp;
  int ep;
  bool bf16_files;
};

const CaseInfo kCases[] = {
    {"s1_fp32_dp2", 1, OptimizerWrapper::kZeroOptimizer, 2, 1, false},
    {"s1_fp32_dp4", 1, OptimizerWrapper::kZeroOptimizer, 4, 1, false},
    {"s1_bf16opt_dp4", 1, OptimizerWrapper::kBf16Optimizer, 4, 1, true},
    {"s2_fp32_dp2", 2, OptimizerWrapper::kZeroOptimizer, 2, 1, false},
    {"s2_fp32_dp4", 2, OptimizerWrapper::kZeroOptimizer, 4, 1, false},
    {"s2_bf16_dp2", 2, OptimizerWrapper::kZeroOptimizer, 2, 1, true},
    {"s3_fp32_dp2", 3, OptimizerWrapper::kZeroStage3, 2, 1, false},
    {"s3_fp32_dp4", 3, OptimizerWrapper::kZeroStage3, 4, 1, false},
    {"s3_fp32_1group_dp4", 3, OptimizerWrapper::kZeroStage3, 4, 1, false},
    {"autoep_mixtral_s2_fp32_dp4_ep2", 2, OptimizerWrapper::kZeroOptimizer, 4, 2, false},
    {"autoep_qwen3_s3_fp32_dp4_ep2", 3, OptimizerWrapper::kZeroStage3, 4, 2, false},
    {"s3_bf16_dp1", 3, OptimizerWrapper::kZeroStage3, 1, 1, true},
    {"s3_bf16_dp2", 3, OptimizerWrapper::kZeroStage3, 2, 1, true},
    {"s3_bf16_dp4", 3, OptimizerWrapper::kZeroStage3, 4, 1, true},
    {"s1_bf16_dp2", 1, OptimizerWrapper::kZeroOptimizer, 2, 1, true},
};

std::string CaseName(const ::testing::TestParamInfo<CaseInfo>& info) { return info.param.name; }

std::string UcpDir(const std::string& name) {
  return FixtureCase(name) + "/checkpoint/global_step5_universal/zero";
}

// The tensor a UCP state file holds: dict['param'] (ZeRO-1/2, experts) or the raw tensor (ZeRO-3).
const TensorRef* UcpTensor(const TorchFile& f) {
  const Value& root = f.root();
  if (root.is(ValueKind::kTensor)) return &root.tensor();
  const Value* param = root.Get("param");
  return param != nullptr && param->is(ValueKind::kTensor) ? &param->tensor() : nullptr;
}

bool SameBytes(const Buffer& a, const Buffer& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

// Gathers every state of every parameter and compares it with DeepSpeed's UCP output of `ucp_case`.
void ExpectGatherMatchesUcp(const CheckpointIndex& index, const std::string& ucp_case) {
  const std::string ucp = UcpDir(ucp_case);
  std::set<std::string> ucp_params;
  for (const auto& entry : fs::directory_iterator(ucp)) {
    if (entry.is_directory()) ucp_params.insert(entry.path().filename().string());
  }
  std::set<std::string> indexed;
  for (const Parameter& p : index.params) indexed.insert(p.name);
  EXPECT_EQ(indexed, ucp_params);
  for (const Parameter& p : index.params) {
    for (StateKind state : kAllStates) {
      const std::string path = absl::StrCat(ucp, "/", p.name, "/", StateName(state), ".pt");
      SCOPED_TRACE(path);
      absl::StatusOr<TorchFile> golden = TorchFile::OpenPath(path);
      ASSERT_TRUE(golden.ok()) << golden.status();
      const TensorRef* tensor = UcpTensor(*golden);
      ASSERT_NE(tensor, nullptr);
      if (golden->root().is(ValueKind::kTensor)) {
        EXPECT_EQ(tensor->shape, Shape({p.numel()}));  // ZeRO-3, tp 1: raw 1-D tensor
      } else {
        EXPECT_EQ(tensor->shape, p.merged_shape());
        const Value* is_expert = golden->root().Get("is_expert_param");
        EXPECT_EQ(is_expert != nullptr && is_expert->bool_value(), p.is_expert());
        if (p.is_expert()) {
          EXPECT_EQ(golden->root().Get("ep_num_experts")->int_value(), p.expert->num_experts);
        }
      }
      absl::StatusOr<Buffer> want = golden->TensorBytes(*tensor);
      ASSERT_TRUE(want.ok()) << want.status();
      absl::StatusOr<Buffer> got = GatherState(index, p, state);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(tensor->dtype,
                state == StateKind::kFp32 ? index.kind.master_dtype : index.kind.state_dtype);
      EXPECT_TRUE(SameBytes(*got, *want)) << p.name << " " << StateName(state) << ": bytes differ";
    }
  }
}

// ZeRO-1/2 UCP folders also hold step.pt: the group's step, which every rank agrees on.
void ExpectStepsMatchUcp(const CheckpointIndex& index, const std::string& ucp_case) {
  for (const Parameter& p : index.params) {
    const std::string path = absl::StrCat(UcpDir(ucp_case), "/", p.name, "/step.pt");
    SCOPED_TRACE(path);
    absl::StatusOr<TorchFile> golden = TorchFile::OpenPath(path);
    ASSERT_TRUE(golden.ok()) << golden.status();
    const FlatGroup& group = index.flat_groups[p.flat_group];
    const Value* step = group.step();
    ASSERT_NE(step, nullptr);
    ASSERT_EQ(step->kind(), golden->root().kind());
    if (step->is(ValueKind::kTensor)) {
      absl::StatusOr<Buffer> got =
          index.files[group.ranks[0].step_file].torch->TensorBytes(step->tensor());
      absl::StatusOr<Buffer> want = golden->TensorBytes(golden->root().tensor());
      ASSERT_TRUE(got.ok() && want.ok());
      EXPECT_TRUE(SameBytes(*got, *want));
      EXPECT_EQ(step->tensor().dtype, golden->root().tensor().dtype);
    } else {
      EXPECT_EQ(step->int_value(), golden->root().int_value());
    }
  }
}

// Every fragment location reads the same bytes through file_offset as through the zip record.
void ExpectFileOffsetsAgree(const CheckpointIndex& index) {
  for (const Parameter& p : index.params) {
    for (const Fragment& f : p.slices[0].fragments) {
      for (StateKind state : kAllStates) {
        const TensorLocation& loc = f.state(state);
        absl::StatusOr<Buffer> by_record = ReadLocation(index, loc);
        ASSERT_TRUE(by_record.ok()) << by_record.status();
        auto source = OpenFileSource(index.files[loc.file].path);
        ASSERT_TRUE(source.ok());
        absl::StatusOr<Buffer> by_offset = (*source)->ReadBuffer(loc.file_offset, loc.num_bytes());
        ASSERT_TRUE(by_offset.ok());
        EXPECT_TRUE(SameBytes(*by_record, *by_offset)) << p.name;
      }
    }
  }
}

class FixtureTest : public ::testing::TestWithParam<CaseInfo> {};

TEST_P(FixtureTest, TopologyAndFiles) {
  const CaseInfo& c = GetParam();
  absl::StatusOr<CheckpointIndex> index = OpenCheckpoint(FixtureCase(c.name) + "/checkpoint");
  ASSERT_TRUE(index.ok()) << index.status();
  const ucp::Topology& t = index->topology;
  const ZeroKind& zk = index->kind;
  EXPECT_EQ(index->dir.tag, "global_step5");
  EXPECT_EQ(zk.zero_stage, c.stage);
  EXPECT_EQ(zk.wrapper, c.wrapper);
  EXPECT_EQ(t.dp, c.dp);
  EXPECT_EQ(t.tp, 1);
  EXPECT_EQ(t.pp, 1);
  EXPECT_EQ(t.mp(), 1);
  EXPECT_EQ(t.ep, c.ep);
  EXPECT_EQ(t.edp(), c.dp / c.ep);
  EXPECT_EQ(zk.master_dtype, DType::kF32);
  EXPECT_EQ(zk.state_dtype, DType::kF32);
  ASSERT_EQ(index->optim_files.size(), static_cast<size_t>(c.dp));
  EXPECT_EQ(index->model_files.size(), static_cast<size_t>(c.stage == 3 ? c.dp : 1));
  for (int dp = 0; dp < c.dp; ++dp) {
    const CheckpointFile& f = index->optim_file(dp);
    EXPECT_EQ(f.name.dp_rank, dp);
    EXPECT_EQ(f.name.shard_prefix, c.bf16_files ? "bf16_" : "");
  }
  EXPECT_EQ(index->optimizer_state_dict().Get(keys::kFp32FlatGroups) != nullptr, c.stage == 3);
  EXPECT_TRUE(index->base_optimizer_state().Get(keys::kParamGroups) != nullptr);
  EXPECT_FALSE(index->params.empty());
  for (const ParamGroup& g : index->param_groups) {
    ASSERT_NE(g.hyperparameters, nullptr);
    EXPECT_NE(g.hyperparameters->Get("lr"), nullptr);
  }
  for (const FlatGroup& g : index->flat_groups) {
    EXPECT_EQ(g.partition_count, g.expert ? c.dp / c.ep : c.dp);
    ASSERT_EQ(g.ranks.size(), static_cast<size_t>(c.dp));
    EXPECT_NE(g.step(), nullptr);
  }
}

TEST_P(FixtureTest, GatherMatchesDeepSpeedUcp) {
  const CaseInfo& c = GetParam();
  absl::StatusOr<CheckpointIndex> index = OpenCheckpoint(FixtureCase(c.name) + "/checkpoint");
  ASSERT_TRUE(index.ok()) << index.status();
  ExpectGatherMatchesUcp(*index, c.name);
  if (c.stage != 3) ExpectStepsMatchUcp(*index, c.name);
}

TEST_P(FixtureTest, FileOffsetsPointAtTheSameBytes) {
  absl::StatusOr<CheckpointIndex> index =
      OpenCheckpoint(FixtureCase(GetParam().name) + "/checkpoint");
  ASSERT_TRUE(index.ok()) << index.status();
  ExpectFileOffsetsAgree(*index);
}

TEST_P(FixtureTest, OpensTheTagFolderDirectlyAndByTag) {
  const std::string root = FixtureCase(GetParam().name) + "/checkpoint";
  absl::StatusOr<CheckpointIndex> direct = OpenCheckpoint(root + "/global_step5");
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(direct->dir.tag, "global_step5");
  OpenOptions options;
  options.tag = "global_step5";
  absl::StatusOr<CheckpointIndex> tagged = OpenCheckpoint(root, options);
  ASSERT_TRUE(tagged.ok()) << tagged.status();
  EXPECT_EQ(tagged->params.size(), direct->params.size());
}

TEST_P(FixtureTest, ResumedCheckpointOpens) {
  // resume_*/checkpoint/global_step8: the UCP loaded at another topology and trained 3 more steps.
  for (const auto& entry : fs::directory_iterator(FixtureCase(GetParam().name))) {
    if (entry.path().filename().string().rfind("resume_", 0) != 0) continue;
    SCOPED_TRACE(entry.path().string());
    absl::StatusOr<CheckpointIndex> index = OpenCheckpoint((entry.path() / "checkpoint").string());
    ASSERT_TRUE(index.ok()) << index.status();
    EXPECT_EQ(index->dir.tag, "global_step8");
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, FixtureTest, ::testing::ValuesIn(kCases), CaseName);

// The reshard goldens: DeepSpeed loaded the case's UCP at another topology and saved it at once.
struct ReshardInfo {
  const char* name;
  const char* dir;
  int dp;
  int ep;
};

const ReshardInfo kReshards[] = {
    {"s1_fp32_dp2", "reshard_dp4", 4, 1},
    {"s1_fp32_dp4", "reshard_dp2", 2, 1},
    {"s1_bf16opt_dp4", "reshard_dp2", 2, 1},
    {"s2_fp32_dp2", "reshard_dp4", 4, 1},
    {"s2_fp32_dp4", "reshard_dp2", 2, 1},
    {"s2_bf16_dp2", "reshard_dp4", 4, 1},
    {"s3_fp32_dp2", "reshard_dp4", 4, 1},
    {"s3_fp32_dp4", "reshard_dp2", 2, 1},
    {"s3_fp32_1group_dp4", "reshard_dp2", 2, 1},
    {"autoep_mixtral_s2_fp32_dp4_ep2", "reshard_dp2_ep1", 2, 1},
    {"autoep_mixtral_s2_fp32_dp4_ep2", "reshard_dp4_ep4", 4, 4},
    {"autoep_qwen3_s3_fp32_dp4_ep2", "reshard_dp2_ep2", 2, 2},
    {"s3_bf16_dp1", "reshard_dp2", 2, 1},
    {"s3_bf16_dp2", "reshard_dp4", 4, 1},
    {"s3_bf16_dp4", "reshard_dp2", 2, 1},
    {"s1_bf16_dp2", "reshard_dp4", 4, 1},
};

class ReshardTest : public ::testing::TestWithParam<ReshardInfo> {};

TEST_P(ReshardTest, GatherMatchesTheSourceUcp) {
  const ReshardInfo& r = GetParam();
  absl::StatusOr<CheckpointIndex> index =
      OpenCheckpoint(absl::StrCat(FixtureCase(r.name), "/", r.dir, "/checkpoint"));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->topology.dp, r.dp);
  EXPECT_EQ(index->topology.ep, r.ep);
  ExpectGatherMatchesUcp(*index, r.name);
  if (index->kind.zero_stage != 3) ExpectStepsMatchUcp(*index, r.name);
}

std::string ReshardName(const ::testing::TestParamInfo<ReshardInfo>& param_info) {
  return absl::StrCat(param_info.param.name, "_", param_info.param.dir);
}

INSTANTIATE_TEST_SUITE_P(Goldens, ReshardTest, ::testing::ValuesIn(kReshards), ReshardName);

// --- Details of particular cases -----------------------------------------------------------------

TEST(IndexDetails, ZeroOneFragmentsFollowParamSliceMappings) {
  // s1_fp32_dp2 rank 1 holds blocks.0.fc2.weight from element 612 on (§3.4; ucp inspect shows
  // numel 732, start 0 in param_slice_mappings[0]).
  absl::StatusOr<CheckpointIndex> index =
      OpenCheckpoint(FixtureCase("s1_fp32_dp2") + "/checkpoint");
  ASSERT_TRUE(index.ok()) << index.status();
  const Parameter* p = index->FindParam("blocks.0.fc2.weight");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->shape, Shape({24, 56}));
  EXPECT_EQ(p->param_group, 0);
  ASSERT_EQ(p->slices[0].fragments.size(), 2u);
  const Fragment& second = p->slices[0].fragments[1];
  EXPECT_EQ(second.dp_rank, 1);
  EXPECT_EQ(second.offset, 24 * 56 - 732);
  EXPECT_EQ(second.numel, 732);
  EXPECT_EQ(second.state(StateKind::kFp32).record_offset, 0u);
  EXPECT_EQ(second.state(StateKind::kExpAvg).numel, 732);
  // Tied head.weight is stored once; the frozen positional table is not in the optimizer.
  ASSERT_EQ(index->shared_params.size(), 1u);
  EXPECT_EQ(index->shared_params[0],
            std::make_pair(std::string("head.weight"), std::string("embed.weight")));
  EXPECT_EQ(index->FindParam("head.weight"), nullptr);
  EXPECT_TRUE(index->frozen_params.empty());  // stage 1 saves no frozen_param_shapes
  // Rank 1's second group partition ends in 3 padding elements: fp32 is stripped, exp_avg is not.
  const FlatGroupRank& last = index->flat_groups[1].ranks[1];
  EXPECT_EQ(last.padding, 3);
  EXPECT_EQ(last.saved_padding, 3);
  EXPECT_EQ(last.partition_numel, 184);
}

TEST(IndexDetails, FragmentsHonourStorageOffsets) {
  // The padding-stripped fp32 partition of s2_bf16_dp2 rank 1 group 1 is a view; every location
  // must lie inside its record.
  absl::StatusOr<CheckpointIndex> index =
      OpenCheckpoint(FixtureCase("s2_bf16_dp2") + "/checkpoint");
  ASSERT_TRUE(index.ok()) << index.status();
  for (const Parameter& p : index->params) {
    for (const Fragment& f : p.slices[0].fragments) {
      for (StateKind s : kAllStates) {
        const TensorLocation& loc = f.state(s);
        const auto* entry = index->files[loc.file].torch->zip().Find(loc.record);
        ASSERT_NE(entry, nullptr);
        EXPECT_LE(loc.record_offset + loc.num_bytes(), entry->size);
        EXPECT_EQ(loc.file_offset, entry->data_offset + loc.record_offset);
      }
    }
  }
}

TEST(IndexDetails, Bf16OptimizerPaddingIsRecordedOnTheLastRank) {
  absl::StatusOr<CheckpointIndex> index =
      OpenCheckpoint(FixtureCase("s1_bf16opt_dp4") + "/checkpoint");
  ASSERT_TRUE(index.ok()) << index.status();
  const FlatGroup& g = index->flat_groups[1];
  ASSERT_EQ(g.ranks.size(), 4u);
  EXPECT_EQ(g.ranks[3].saved_padding, 3);
  EXPECT_EQ(g.ranks[3].padding, 3);
  EXPECT_EQ(g.ranks[0].saved_padding, 0);
}

TEST(IndexDetails, FrozenParams) {
  absl::StatusOr<CheckpointIndex> s2 = OpenCheckpoint(FixtureCase("s2_fp32_dp2") + "/checkpoint");
  ASSERT_TRUE(s2.ok()) << s2.status();
  ASSERT_EQ(s2->frozen_params.size(), 1u);
  EXPECT_EQ(s2->frozen_params[0].name, "pos");
  EXPECT_EQ(s2->frozen_params[0].shape, Shape({8, 24}));
  ASSERT_EQ(s2->frozen_params[0].pieces.size(), 1u);
  EXPECT_EQ(s2->frozen_params[0].pieces[0].location.numel, 8 * 24);

  // ZeRO-3: each rank's padded partition (P = 48 of 192 at dp 4), padding skipped.
  absl::StatusOr<CheckpointIndex> s3 = OpenCheckpoint(FixtureCase("s3_fp32_dp4") + "/checkpoint");
  ASSERT_TRUE(s3.ok()) << s3.status();
  ASSERT_EQ(s3->frozen_params.size(), 1u);
  const FrozenParam& pos = s3->frozen_params[0];
  ASSERT_EQ(pos.pieces.size(), 4u);
  int64_t next = 0;
  for (const FrozenParam::Piece& piece : pos.pieces) {
    EXPECT_EQ(piece.offset, next);
    next += piece.location.numel;
  }
  EXPECT_EQ(next, 8 * 24);
  for (const FrozenParam::Piece& piece : pos.pieces)
    EXPECT_TRUE(ReadLocation(*s3, piece.location).ok());
}

TEST(IndexDetails, ZeroThreeSubGroupsAndSteps) {
  absl::StatusOr<CheckpointIndex> index =
      OpenCheckpoint(FixtureCase("s3_fp32_dp2") + "/checkpoint");
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_EQ(index->flat_groups.size(), 2u);
  ASSERT_EQ(index->param_groups.size(), 2u);
  EXPECT_EQ(index->param_groups[1].flat_groups, std::vector<int>{1});
  // Rank 1's sub-group 1 holds 183 elements, of which 365 - 183 = 182 are real.
  const FlatGroupRank& r1 = index->flat_groups[1].ranks[1];
  EXPECT_EQ(r1.partition_numel, 183);
  EXPECT_EQ(r1.padding, 183 * 2 - 365);
  const Value* step = index->flat_groups[0].step();
  ASSERT_NE(step, nullptr);
  EXPECT_TRUE(step->is(ValueKind::kTensor));
  // shared_params come from rank 0 only (other ranks save {}).
  EXPECT_EQ(index->shared_params.size(), 1u);
}

TEST(IndexDetails, AutoEpZeroTwoExperts) {
  absl::StatusOr<CheckpointIndex> index =
      OpenCheckpoint(FixtureCase("autoep_mixtral_s2_fp32_dp4_ep2") + "/checkpoint");
  ASSERT_TRUE(index.ok()) << index.status();
  const ucp::Topology& t = index->topology;
  EXPECT_FALSE(t.use_data_before_expert_parallelism);
  EXPECT_EQ(t.PlaceOnEp(1).ep_rank, 1);
  EXPECT_EQ(t.PlaceOnEp(1).edp_rank, 0);
  EXPECT_EQ(t.DpRank(ucp::EpPlace{1, 1}), 3);
  ASSERT_EQ(index->autoep_layers.size(), 2u);
  EXPECT_EQ(index->autoep_layers[1].expert_key_prefix, "model.layers.1.mlp.experts");
  EXPECT_EQ(index->autoep_layers[1].checkpoint_format, "per_expert_files");
  EXPECT_EQ(index->expert_files.size(), 8u);
  const Parameter* w2 = index->FindParam("model.layers.0.mlp.experts.w2");
  ASSERT_NE(w2, nullptr);
  ASSERT_TRUE(w2->is_expert());
  EXPECT_EQ(w2->shape, Shape({2, 16, 6}));
  EXPECT_EQ(w2->merged_shape(), Shape({4, 16, 6}));
  EXPECT_TRUE(index->flat_groups[w2->flat_group].expert);
  // Layer 0's fused weights sit in the first half of each EP rank's expert partition: held by
  // expert-DP rank 0 of EP rank 0 (dp 0) and of EP rank 1 (dp 1).
  ASSERT_EQ(w2->slices[0].fragments.size(), 2u);
  EXPECT_EQ(w2->slices[0].fragments[0].dp_rank, 0);
  EXPECT_EQ(w2->slices[0].fragments[1].dp_rank, 1);
  EXPECT_EQ(w2->slices[0].fragments[1].ep_rank, 1);
  EXPECT_EQ(w2->slices[0].fragments[1].merged_offset, 2 * 16 * 6);
  EXPECT_FALSE(index->FindParam("model.embed_tokens.weight")->is_expert());
  EXPECT_TRUE(index->universal_checkpoint_info.present());
  EXPECT_EQ(index->universal_checkpoint_info.version, 0.4);
  EXPECT_EQ(index->universal_checkpoint_info.expert_parameter_patterns,
            std::vector<std::string>{".*\\.experts\\.w[123]$"});
}

TEST(IndexDetails, AutoEpZeroThreeExperts) {
  absl::StatusOr<CheckpointIndex> index =
      OpenCheckpoint(FixtureCase("autoep_qwen3_s3_fp32_dp4_ep2") + "/checkpoint");
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_EQ(index->flat_groups.size(), 2u);
  const FlatGroup& experts = index->flat_groups[1];
  EXPECT_TRUE(experts.expert);
  EXPECT_EQ(experts.partition_count, 2);
  EXPECT_TRUE(index->param_groups[1].expert);
  const Parameter* w1 = index->FindParam("model.layers.1.mlp.experts.w1");
  ASSERT_NE(w1, nullptr);
  EXPECT_EQ(w1->merged_shape(), Shape({4, 6, 16}));
  // Four fragments: two EP ranks x two expert-DP ranks, in merged order.
  ASSERT_EQ(w1->slices[0].fragments.size(), 4u);
  const int want_dp[] = {0, 2, 1, 3};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(w1->slices[0].fragments[i].dp_rank, want_dp[i]);
    EXPECT_EQ(w1->slices[0].fragments[i].merged_offset, i * 96);
  }
  EXPECT_EQ(index->autoep_layers[0].checkpoint_format_version, 1);
}

}  // namespace
}  // namespace ucp::converters::deepspeed
