// The index of the layouts DeepSpeed's own converter refuses (fixtures/deepspeed_extra): ZeRO-0
// (zero0_index.cc) and native DeepSpeed MoE (native_moe.cc). The state values themselves are
// checked end to end in tests/integration/convert_extra_test.cc.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/deepspeed/gather.h"
#include "formats/deepspeed/deepspeed_testutil.h"
#include "formats/torch/torch_writer.h"
#include "gtest/gtest.h"

namespace ucp::converters::deepspeed {
using formats::torch::Value;
namespace {

namespace fs = std::filesystem;
using formats::deepspeed::testing::ScratchDir;

std::string ExtraTag(const std::string& name) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return absl::StrCat(root != nullptr ? root : ".", "/fixtures/deepspeed_extra/", name,
                      "/checkpoint/global_step5");
}

std::string TensorBytes(const CheckpointIndex& index, const Value* v) {
  EXPECT_TRUE(v != nullptr && v->is(formats::torch::ValueKind::kTensor));
  auto b = index.model_file().torch->TensorBytes(v->tensor());
  EXPECT_TRUE(b.ok()) << b.status();
  return std::string(b->AsStringView());
}

TEST(Zero0Index, NamesTheOptimizersParamsFromTheModule) {
  absl::StatusOr<CheckpointIndex> index = OpenCheckpoint(ExtraTag("s0_fp32_dp2"));
  ASSERT_TRUE(index.ok()) << index.status();
  const ucp::Topology& t = index->topology;
  const ZeroKind& zk = index->kind;
  EXPECT_EQ(zk.zero_stage, 0);
  EXPECT_EQ(zk.wrapper, OptimizerWrapper::kTorchOptimizer);
  EXPECT_EQ(t.dp, 2);
  EXPECT_TRUE(index->optim_files.empty());
  ASSERT_EQ(index->params.size(), 16u);
  ASSERT_EQ(index->param_groups.size(), 2u);
  EXPECT_EQ(index->flat_groups[0].params.size(), 5u);
  EXPECT_EQ(index->params[0].name, "embed.weight");
  EXPECT_EQ(index->params[5].name, "head_bias");  // group 1 starts with the first 1-D parameter
  ASSERT_EQ(index->frozen_params.size(), 1u);
  EXPECT_EQ(index->frozen_params[0].name, "pos");
  ASSERT_EQ(index->shared_params.size(), 1u);
  EXPECT_EQ(index->shared_params[0],
            std::make_pair(std::string("head.weight"), std::string("embed.weight")));
  const Value& module = *index->model_file().root().Get("module");
  for (const Parameter& p : index->params) {
    ASSERT_EQ(p.slices.size(), 1u);
    ASSERT_EQ(p.slices[0].fragments.size(), 1u) << p.name;
    absl::StatusOr<Buffer> fp32 = GatherState(*index, p, StateKind::kFp32);
    ASSERT_TRUE(fp32.ok()) << fp32.status();
    EXPECT_EQ(std::string(fp32->AsStringView()), TensorBytes(*index, module.Get(p.name))) << p.name;
  }
  // optimizer_state_dict() / base_optimizer_state(): the torch state_dict inside the model file.
  EXPECT_NE(index->base_optimizer_state().Get("param_groups"), nullptr);
  EXPECT_EQ(&index->optim_file(1), &index->model_file());
}

TEST(Zero0Index, Bf16MastersComeFromTheWrapper) {
  absl::StatusOr<CheckpointIndex> index = OpenCheckpoint(ExtraTag("s0_bf16_dp2"));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->kind.master_dtype, DType::kF32);
  const Value& module = *index->model_file().root().Get("module");
  EXPECT_EQ(module.Get("embed.weight")->tensor().dtype, DType::kBF16);
  const Value* masters = index->model_file().root().Get("optimizer")->Get("fp32_groups");
  absl::StatusOr<Buffer> fp32 = GatherState(*index, index->params[0], StateKind::kFp32);
  ASSERT_TRUE(fp32.ok()) << fp32.status();
  EXPECT_EQ(std::string(fp32->AsStringView()),
            TensorBytes(*index, masters->items()[0]->items()[0]));
}

// Opens a copy of s0_fp32_dp2 whose optimizer param_groups list `groups` (optimizer indices).
absl::Status OpenWithGroups(const std::vector<std::vector<int>>& groups) {
  ScratchDir scratch;
  const fs::path tag = scratch.path() / "global_step5";
  fs::copy(ExtraTag("s0_fp32_dp2"), tag);
  const std::string model = (tag / "mp_rank_00_model_states.pt").string();
  absl::StatusOr<TorchFile> file = TorchFile::OpenPath(model);
  EXPECT_TRUE(file.ok()) << file.status();
  formats::torch::ValueArena& arena = *file->tree().arena;
  const Value* pg = file->root().Get("optimizer")->Get("param_groups");
  for (size_t g = 0; g < groups.size(); ++g) {
    Value* list = arena.List();
    for (int i : groups[g]) formats::torch::ValueArena::Append(list, arena.Int(i));
    Value& group = const_cast<Value&>(*pg->items()[g]);
    for (size_t e = 0; e < group.entries().size(); ++e) {
      if (group.entries()[e].first->str() == "params")
        formats::torch::ValueArena::ReplaceValue(&group, e, list);
    }
  }
  absl::Status saved = formats::torch::SaveTorchFile(model + ".new", file->root(), file->BytesFn());
  EXPECT_TRUE(saved.ok()) << saved;
  fs::rename(model + ".new", model);
  return OpenCheckpoint(tag.string()).status();
}

TEST(Zero0Index, ShapeSpreadOverGroupsIsRefused) {
  // Index 6 (blocks.0.ln.weight, [24]) moved into group 0: which [24] tensor is it?
  absl::Status st = OpenWithGroups({{0, 1, 2, 3, 4, 6}, {5, 7, 8, 9, 10, 11, 12, 13, 14, 15}});
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented) << st;
  EXPECT_NE(st.message().find("shape [24]"), std::string::npos) << st;
}

TEST(Zero0Index, GroupOutOfModuleOrderIsRefused) {
  absl::Status st = OpenWithGroups({{0, 2, 1, 3, 4}, {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}});
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented) << st;
  EXPECT_NE(st.message().find("not in module order"), std::string::npos) << st;
}

TEST(Zero0Index, MissingModelFileIsNotFound) {
  ScratchDir scratch;
  const fs::path tag = scratch.path() / "global_step5";
  fs::copy(ExtraTag("s0_fp32_dp2"), tag);
  fs::rename(tag / "mp_rank_00_model_states.pt", tag / "mp_rank_01_model_states.pt");
  absl::Status st = OpenCheckpoint(tag.string()).status();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("mp_rank_01_model_states.pt"), std::string::npos) << st;
}

TEST(NativeMoeIndex, ExpertParamsStackTheirEpRanks) {
  absl::StatusOr<CheckpointIndex> index = OpenCheckpoint(ExtraTag("moe_s2_fp32_dp4_ep2"));
  ASSERT_TRUE(index.ok()) << index.status();
  const ucp::Topology& t = index->topology;
  EXPECT_EQ(t.ep, 2);
  EXPECT_EQ(t.edp(), 2);
  EXPECT_EQ(index->native_moe_num_experts, std::vector<int>({4}));
  EXPECT_TRUE(index->autoep_layers.empty());
  EXPECT_EQ(index->expert_files.size(), 4u);
  int experts = 0;
  for (const Parameter& p : index->params) {
    if (!p.is_expert()) continue;
    ++experts;
    EXPECT_TRUE(p.expert->stacked);
    EXPECT_EQ(p.merged_shape().dim(0), 2) << p.name;
    EXPECT_EQ(p.merged_shape().rank(), p.shape.rank() + 1) << p.name;
    // Two expert-DP ranks per EP rank; fragments of EP rank 1 come from dp ranks 1 and 3.
    for (const Fragment& f : p.slices[0].fragments) EXPECT_EQ(f.ep_rank, f.dp_rank % 2) << p.name;
  }
  EXPECT_EQ(experts, 8);
  const Parameter* p =
      index->FindParam("blocks.1.moe.deepspeed_moe.experts.deepspeed_experts.1.0.weight");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->merged_shape().ToString(), Shape({2, 44, 20}).ToString());
}

TEST(NativeMoeIndex, MissingExpertFileIsNamed) {
  ScratchDir scratch;
  const fs::path tag = scratch.path() / "global_step5";
  fs::copy(ExtraTag("moe_s2_fp32_dp4_ep2"), tag);
  fs::remove(tag / "layer_0_expert_3_mp_rank_00_model_states.pt");
  absl::Status st = OpenCheckpoint(tag.string()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  EXPECT_NE(st.message().find("layer_0_expert_3_mp_rank_00_model_states.pt"), std::string::npos)
      << st;
}

TEST(NativeMoeIndex, ShardOfAnotherEpRankIsCaught) {
  ScratchDir scratch;
  const fs::path tag = scratch.path() / "global_step5";
  fs::copy(ExtraTag("moe_s2_fp32_dp4_ep2"), tag);
  // dp rank 1 (EP rank 1) replaced by dp rank 2 (EP rank 0): its mappings sit at the wrong offsets.
  fs::copy_file(tag / "zero_pp_rank_2_mp_rank_00_optim_states.pt",
                tag / "zero_pp_rank_1_mp_rank_00_optim_states.pt",
                fs::copy_options::overwrite_existing);
  absl::Status st = OpenCheckpoint(tag.string()).status();
  EXPECT_FALSE(st.ok());
}

}  // namespace
}  // namespace ucp::converters::deepspeed
