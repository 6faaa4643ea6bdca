// Layouts no fixture has, made by rewriting fixture files with formats/torch's writer: a tensor
// parallel (mp_world_size 2) copy of a ZeRO-1 and of a ZeRO-3 checkpoint, and ds_config settings
// the index must refuse (round-robin gradients, pipeline parallelism, a flipped EP↔DP mapping,
// native MoE, folding).
#include <filesystem>
#include <functional>

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
using formats::torch::ValueArena;

// Edits a parsed file's tree in place. The tree's nodes are const for readers; a test owns this
// one and changes it before anything else reads it.
using Edit = std::function<void(ValueArena& arena, Value& root)>;

void Rewrite(const fs::path& src, const fs::path& dst, const Edit& edit) {
  absl::StatusOr<TorchFile> file = TorchFile::OpenPath(src.string());
  ASSERT_TRUE(file.ok()) << file.status();
  Value& root = const_cast<Value&>(file->root());
  edit(*file->tree().arena, root);
  absl::Status saved = formats::torch::SaveTorchFile(dst.string(), root, file->BytesFn());
  ASSERT_TRUE(saved.ok()) << saved;
}

// dict[key] = value (replacing an existing entry).
void Set(ValueArena& arena, const Value& dict, absl::string_view key, const Value* value) {
  Value& d = const_cast<Value&>(dict);
  for (size_t i = 0; i < d.entries().size(); ++i) {
    if (d.entries()[i].first->is(formats::torch::ValueKind::kStr) &&
        d.entries()[i].first->str() == key) {
      ValueArena::ReplaceValue(&d, i, value);
      return;
    }
  }
  arena.SetItem(&d, key, value);
}

Edit TensorParallel2() {
  return [](ValueArena& arena, Value& root) {
    Set(arena, root, "mp_world_size", arena.Int(2));
    Set(arena, *root.Get("checkpoint_parallel_dimensions"), "tp_degree", arena.Int(2));
  };
}

std::string Name(const char* pattern_dp, int dp, int mp, const char* suffix) {
  return absl::StrCat(pattern_dp, dp, "_mp_rank_0", mp, suffix);
}

// A two-MP-rank checkpoint whose MP ranks hold the same data (the fixture's, twice); `edit`
// says how the model files describe the split (tp 2 by default).
fs::path MakeTwoMpRanks(ScratchDir& scratch, const std::string& name, bool zero3,
                        const Edit& edit = TensorParallel2()) {
  const fs::path tag = scratch.CopyTag(name);
  for (int dp = 0; dp < 2; ++dp) {
    fs::copy_file(tag / Name("zero_pp_rank_", dp, 0, "_optim_states.pt"),
                  tag / Name("zero_pp_rank_", dp, 1, "_optim_states.pt"));
  }
  if (zero3) {
    for (int dp = 0; dp < 2; ++dp) {
      for (int mp = 1; mp >= 0; --mp) {
        Rewrite(tag / Name("zero_pp_rank_", dp, 0, "_model_states.pt"),
                tag / Name("zero_pp_rank_", dp, mp, "_model_states.pt"), edit);
      }
    }
  } else {
    Rewrite(tag / "mp_rank_00_model_states.pt", tag / "mp_rank_01_model_states.pt", edit);
    Rewrite(tag / "mp_rank_00_model_states.pt", tag / "mp_rank_00_model_states.pt", edit);
  }
  return tag;
}

void ExpectTwoIdenticalSlices(const fs::path& tag) {
  absl::StatusOr<CheckpointIndex> index = OpenCheckpoint(tag.string());
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->topology.tp, 2);
  EXPECT_EQ(index->topology.mp(), 2);
  EXPECT_EQ(index->optim_files.size(), 4u);
  EXPECT_EQ(index->optim_file(1, 1).name.mp_rank, 1);
  for (const Parameter& p : index->params) {
    ASSERT_EQ(p.slices.size(), 2u);
    EXPECT_EQ(p.slices[1].mp_rank, 1);
    EXPECT_EQ(p.slices[1].shape, p.shape);
    for (const Fragment& f : p.slices[1].fragments) {
      EXPECT_EQ(index->files[f.state(StateKind::kFp32).file].name.mp_rank, 1);
    }
    for (StateKind s : kAllStates) {
      absl::StatusOr<Buffer> a = GatherState(*index, p, s, 0);
      absl::StatusOr<Buffer> b = GatherState(*index, p, s, 1);
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_EQ(a->AsStringView(), b->AsStringView()) << p.name;
    }
  }
}

TEST(TensorParallel, ZeroOneSlicesPerMpRank) {
  ScratchDir scratch;
  ExpectTwoIdenticalSlices(MakeTwoMpRanks(scratch, "s1_fp32_dp2", false));
}

TEST(TensorParallel, ZeroThreeSlicesPerMpRank) {
  ScratchDir scratch;
  ExpectTwoIdenticalSlices(MakeTwoMpRanks(scratch, "s3_fp32_dp2", true));
}

TEST(TensorParallel, MissingShardOfTheSecondMpRank) {
  ScratchDir scratch;
  const fs::path tag = MakeTwoMpRanks(scratch, "s1_fp32_dp2", false);
  fs::remove(tag / "zero_pp_rank_1_mp_rank_01_optim_states.pt");
  absl::StatusOr<CheckpointIndex> index = OpenCheckpoint(tag.string());
  EXPECT_EQ(index.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(index.status().message().find("zero_pp_rank_1_mp_rank_01_optim_states.pt"),
            std::string::npos)
      << index.status();
}

// Opens a copy of `name` whose model file(s) got `edit`; returns the status.
absl::Status OpenEdited(const std::string& name, bool zero3, const Edit& edit) {
  ScratchDir scratch;
  const fs::path tag = scratch.CopyTag(name);
  for (const auto& entry : fs::directory_iterator(tag)) {
    const std::string base = entry.path().filename().string();
    if (base.find("_model_states.pt") == std::string::npos || base.rfind("layer_", 0) == 0)
      continue;
    if (zero3 != (base.rfind("zero_pp_rank_", 0) == 0)) continue;
    Rewrite(entry.path(), entry.path(), edit);
  }
  return OpenCheckpoint(tag.string()).status();
}

TEST(RefusedLayouts, TpDegreeThatDoesNotMatchTheFiles) {
  absl::Status st = OpenEdited("s1_fp32_dp2", false, [](ValueArena& arena, Value& root) {
    Set(arena, *root.Get("checkpoint_parallel_dimensions"), "tp_degree", arena.Int(2));
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("tp_degree 2 x pp_degree 1 != mp_world_size 1"), std::string::npos)
      << st;
}

TEST(RefusedLayouts, PipelineParallel) {
  ScratchDir scratch;
  const fs::path tag =
      MakeTwoMpRanks(scratch, "s1_fp32_dp2", false, [](ValueArena& arena, Value& root) {
        Set(arena, root, "mp_world_size", arena.Int(2));
        Set(arena, *root.Get("checkpoint_parallel_dimensions"), "pp_degree", arena.Int(2));
      });
  absl::Status st = OpenCheckpoint(tag.string()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented) << st;
  EXPECT_NE(st.message().find("pipeline parallelism (pp_degree 2)"), std::string::npos) << st;
}

TEST(RefusedLayouts, RoundRobinGradients) {
  absl::Status st = OpenEdited("s2_fp32_dp2", false, [](ValueArena& arena, Value& root) {
    Set(arena, *root.Get("ds_config")->Get("zero_optimization"), "round_robin_gradients",
        arena.Bool(true));
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented) << st;
  EXPECT_NE(st.message().find("round_robin_gradients"), std::string::npos) << st;
}

TEST(RefusedLayouts, NativeMoe) {
  absl::Status st = OpenEdited("s2_fp32_dp2", false, [](ValueArena& arena, Value& root) {
    Set(arena, root, "num_experts", arena.List({arena.Int(4)}));
  });
  // Native MoE is indexed (native_moe.cc), but it needs 'moe' param groups and expert files.
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_NE(st.message().find("native DeepSpeed MoE"), std::string::npos) << st;
}

TEST(RefusedLayouts, Folding) {
  absl::Status st = OpenEdited("s3_fp32_dp2", true, [](ValueArena& arena, Value& root) {
    Value* folding = arena.Dict();
    arena.SetItem(folding, "version", arena.Int(1));
    Set(arena, root, "folding", folding);
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented) << st;
}

TEST(RefusedLayouts, FlippedExpertDataParallelOrder) {
  // With use_data_before_expert_parallelism, dp rank 1 would be expert-DP rank 1 of EP rank 0; its
  // param_slice_mappings say otherwise.
  absl::Status st =
      OpenEdited("autoep_mixtral_s2_fp32_dp4_ep2", false, [](ValueArena& arena, Value& root) {
        Set(arena, *root.Get("ds_config"), "use_data_before_expert_parallelism", arena.Bool(true));
      });
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_NE(st.message().find("param_slice_mappings[1]"), std::string::npos) << st;
}

TEST(RefusedLayouts, ExpertShapeWithoutLocalExperts) {
  absl::Status st =
      OpenEdited("autoep_mixtral_s2_fp32_dp4_ep2", false, [](ValueArena& arena, Value& root) {
        const Value& layer = *root.Get("ds_autoep_layers")->items()[0];
        Set(arena, layer, "num_local_experts", arena.Int(1));
        Set(arena, layer, "num_experts", arena.Int(2));
      });
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_NE(st.message().find("local experts in dim 0"), std::string::npos) << st;
}

}  // namespace
}  // namespace ucp::converters::deepspeed
