// ucp::ShardLayout (ucp/shard_layout.h) against what DeepSpeed itself stored in every real
// fixture: for each optimizer param group (ZeRO-1/2) or sub-group (ZeRO-3) and each DP rank,
//   * Split of DeepSpeed's own UCP tensors (the merged fp32 / exp_avg / exp_avg_sq, AutoEP experts
//     as [num_experts, ...]) reproduces the rank's stored partitions element for element: ZeRO-1/2
//     single_partition_of_fp32_groups and the base optimizer's exp_avg / exp_avg_sq, ZeRO-3
//     fp32_flat_groups and state exp_avg / exp_avg_sq (padding is uninitialised in DeepSpeed and
//     not compared);
//   * ZeRO-1/2: param_slice_mappings lists exactly the layout's pieces (names, start, numel) and
//     group_paddings / partition_count are the layout's (BF16_Optimizer's rule included);
//   * the stored partition sizes are the layout's.
// The index opens the folder only for its structure (files, topology, group membership); the
// stored values are read straight from the pickles here. Native MoE (no DeepSpeed UCP exists for
// it) is checked for structure only.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/deepspeed_testutil.h"
#include "formats/deepspeed/value_access.h"
#include "gtest/gtest.h"
#include "ucp/shard_layout.h"
#include "ucp/universal_source.h"

namespace ucp::converters::deepspeed {
namespace {

namespace keys = formats::deepspeed::keys;
using formats::torch::TensorRef;
using formats::torch::Value;
using ucp::ShardLayout;

struct Fixture {
  std::string set;  // fixtures/<set>
  std::string name;
  bool has_ucp = true;
};

void PrintTo(const Fixture& f, std::ostream* os) { *os << f.set << "/" << f.name; }

std::string Root(const Fixture& f) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return absl::StrCat(root != nullptr ? root : ".", "/fixtures/", f.set, "/", f.name,
                      "/checkpoint");
}

ShardLayout::Bytes TensorBytes(const formats::torch::TorchFile& file, const Value* v) {
  absl::StatusOr<const TensorRef*> t = formats::deepspeed::AsTensor(v, "tensor");
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return {};
  absl::StatusOr<Buffer> b = file.TensorBytes(**t);
  EXPECT_TRUE(b.ok()) << b.status();
  if (!b.ok()) return {};
  const auto* p = reinterpret_cast<const uint8_t*>(b->data());
  return ShardLayout::Bytes(p, p + b->size());
}

// The rank's stored tensors of group g for the three states (fp32, exp_avg, exp_avg_sq).
std::vector<const Value*> StoredStates(const Value& osd, int stage, int g) {
  const Value* state = nullptr;
  const Value* fp32 = nullptr;
  if (stage == 3) {
    fp32 = osd.Get(keys::kFp32FlatGroups)->items()[g];
    state = osd.Get(keys::kOptimizerStateDict)->Get(keys::kState);
  } else {
    fp32 = osd.Get(keys::kSinglePartitionOfFp32Groups)->items()[g];
    state = osd.Get(keys::kBaseOptimizerState)->Get(keys::kState);
  }
  const Value* s = formats::deepspeed::GetByInt(*state, g);
  return {fp32, s->Get(keys::kExpAvg), s->Get(keys::kExpAvgSq)};
}

// ZeRO-1/2: the stored mappings, paddings and counts of group g on one rank, against the layout.
void CheckFlatMetadata(const Value& osd, int g, const ucp::RankShard& rank,
                       const CheckpointIndex& index, const FlatGroup& fg) {
  const Value* mappings = osd.Get(keys::kParamSliceMappings)->items()[g];
  ASSERT_EQ(mappings->entries().size(), rank.pieces.size());
  for (size_t i = 0; i < rank.pieces.size(); ++i) {
    const auto& [k, v] = mappings->entries()[i];
    const ucp::ShardPiece& piece = rank.pieces[i];
    EXPECT_EQ(k->str(), index.params[fg.params[piece.param]].name);
    absl::StatusOr<formats::deepspeed::FragmentAddress> a =
        formats::deepspeed::AsFragmentAddress(v, "fragment_address");
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->start, piece.partition_offset);
    EXPECT_EQ(a->numel, piece.numel);
  }
  const bool bf16 = index.kind.wrapper == OptimizerWrapper::kBf16Optimizer;
  EXPECT_EQ(osd.Get(keys::kGroupPaddings)->items()[g]->int_value(), rank.SavedPadding(bf16));
  EXPECT_EQ(osd.Get(keys::kPartitionCount)->items()[g]->int_value(), rank.world);
}

class ShardLayoutFixtureTest : public ::testing::TestWithParam<Fixture> {};

TEST_P(ShardLayoutFixtureTest, SplitReproducesEveryStoredPartition) {
  const Fixture& fx = GetParam();
  absl::StatusOr<CheckpointIndex> index = OpenCheckpoint(Root(fx));
  ASSERT_TRUE(index.ok()) << index.status();
  const int stage = index->kind.zero_stage;
  ASSERT_GE(stage, 1);
  std::unique_ptr<ucp::Source> ucp;
  if (fx.has_ucp) {
    absl::StatusOr<std::unique_ptr<ucp::Source>> opened =
        ucp::OpenUniversalSource(Root(fx) + "/global_step5_universal");
    ASSERT_TRUE(opened.ok()) << opened.status();
    ucp = *std::move(opened);
  }
  int64_t compared_bytes = 0;
  for (const FlatGroup& fg : index->flat_groups) {
    SCOPED_TRACE(absl::StrCat("group ", fg.index));
    ucp::GroupSpec spec{
        stage == 3 ? ucp::PartitionKind::kPerParam : ucp::PartitionKind::kFlat, {}, fg.expert};
    for (int pi : fg.params) spec.numels.push_back(index->params[pi].numel());
    const ShardLayout layout(spec, index->topology);
    // Split of the UCP's merged tensors, per state.
    std::vector<std::vector<ShardLayout::Bytes>> split(kNumStates);
    if (ucp != nullptr) {
      for (int s = 0; s < kNumStates; ++s) {
        std::vector<ShardLayout::Bytes> merged;
        for (int pi : fg.params) {
          const ucp::ParamMeta* meta = ucp->Find(index->params[pi].name);
          ASSERT_NE(meta, nullptr) << index->params[pi].name;
          absl::StatusOr<Buffer> b = ucp->StateBytes(*meta, static_cast<ucp::ParamState>(s));
          ASSERT_TRUE(b.ok()) << b.status();
          const auto* p = reinterpret_cast<const uint8_t*>(b->data());
          merged.emplace_back(p, p + b->size());
        }
        split[s] = layout.Split(merged, 4);  // fixture masters and moments are fp32
      }
    }
    for (int dp = 0; dp < index->topology.dp; ++dp) {
      SCOPED_TRACE(absl::StrCat("dp rank ", dp));
      const CheckpointFile& file = index->optim_file(dp);
      const Value& osd = *file.root().Get(keys::kOptimizerStateDict);
      const ucp::RankShard rank = layout.Shard(dp);
      if (stage != 3) CheckFlatMetadata(osd, fg.index, rank, *index, fg);
      const std::vector<const Value*> stored = StoredStates(osd, stage, fg.index);
      for (int s = 0; s < kNumStates; ++s) {
        const ShardLayout::Bytes bytes = TensorBytes(*file.torch, stored[s]);
        // The padding-stripped ZeRO-1/2 master partition is the one shorter tensor.
        const int64_t stored_numel = static_cast<int64_t>(bytes.size() / 4);
        EXPECT_TRUE(stored_numel == rank.size ||
                    (s == 0 && stored_numel == rank.size - rank.padding))
            << "state " << s << ": " << stored_numel << " elements, layout " << rank.size;
        if (ucp == nullptr) continue;
        for (const ucp::ShardPiece& piece : rank.pieces) {
          const size_t at = piece.partition_offset * 4, n = piece.numel * 4;
          ASSERT_LE(at + n, bytes.size());
          EXPECT_EQ(std::memcmp(bytes.data() + at, split[s][dp].data() + at, n), 0)
              << "state " << s << " of '" << index->params[fg.params[piece.param]].name << "'";
          compared_bytes += static_cast<int64_t>(n);
        }
      }
    }
  }
  if (ucp != nullptr) {
    EXPECT_GT(compared_bytes, 0);
  }
}

std::vector<Fixture> AllFixtures() {
  std::vector<Fixture> out;
  for (const char* name :
       {"s1_fp32_dp2", "s1_fp32_dp4", "s1_bf16opt_dp4", "s2_fp32_dp2", "s2_fp32_dp4", "s2_bf16_dp2",
        "s3_fp32_dp2", "s3_fp32_dp4", "s3_fp32_1group_dp4", "autoep_deepseek_v3_s1_fp32_dp4_ep4",
        "autoep_mixtral_s2_fp32_dp4_ep2", "autoep_mixtral_s2_bf16_dp4_ep2",
        "autoep_mixtral_s3_fp32_dp4_ep2", "autoep_qwen3_s2_fp32_dp2_ep1",
        "autoep_qwen3_s3_fp32_dp4_ep2", "s3_bf16_dp1", "s3_bf16_dp2", "s3_bf16_dp4",
        "s1_bf16_dp2"}) {
    out.push_back({"deepspeed", name, true});
  }
  out.push_back({"deepspeed_extra", "moe_s2_fp32_dp4_ep2", false});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ShardLayoutFixtureTest, ::testing::ValuesIn(AllFixtures()),
                         [](const ::testing::TestParamInfo<Fixture>& p) { return p.param.name; });

}  // namespace
}  // namespace ucp::converters::deepspeed
