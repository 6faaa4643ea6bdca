#include "formats/torch/torch_file.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "formats/base/byte_sink.h"
#include "formats/torch/torch_writer.h"
#include "formats/zip/zip_writer.h"
#include "gtest/gtest.h"

namespace ucp::formats::torch {
namespace {

std::string Fixture(const std::string& rel) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return std::string(root ? root : ".") + "/fixtures/deepspeed/" + rel;
}

TEST(TorchFileTest, ReadsDeepSpeedModelStates) {
  auto file = TorchFile::OpenPath(
      Fixture("s2_fp32_dp2/checkpoint/global_step5/mp_rank_00_model_states.pt"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->archive_root(), "mp_rank_00_model_states");
  const Value& root = file->root();
  ASSERT_TRUE(root.is(ValueKind::kDict));
  EXPECT_EQ(root.entries()[0].first->str(), "module");
  EXPECT_EQ(root.Get("global_steps")->int_value(), 5);
  EXPECT_EQ(root.Get("dp_world_size")->int_value(), 2);
  EXPECT_EQ(root.Get("sparse_tensor_module_names")->kind(), ValueKind::kSet);
  const Value* module = root.Get("module");
  ASSERT_EQ(module->kind(), ValueKind::kOrderedDict);
  ASSERT_NE(module->state(), nullptr);  // OrderedDict._metadata
  const Value* embed = module->Get("embed.weight");
  ASSERT_NE(embed, nullptr);
  ASSERT_EQ(embed->kind(), ValueKind::kTensor);
  EXPECT_EQ(embed->tensor().shape, (Shape{61, 24}));
  // ZeRO-1/2 module tensors are views into one flat buffer (deepspeed-formats.md §2.1).
  const Value* shapes = root.Get("param_shapes");
  ASSERT_TRUE(shapes->is(ValueKind::kList));
  const Value* first_shape = shapes->items()[0]->Get("embed.weight");
  ASSERT_NE(first_shape, nullptr);
  EXPECT_TRUE(first_shape->IsGlobal("torch", "Size"));
  auto bytes = file->TensorBytes(embed->tensor());
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(bytes->size(), 61u * 24 * 4);
  EXPECT_TRUE(file->Verify().ok());
}

TEST(TorchFileTest, ReadsOptimizerShardObjects) {
  auto file = TorchFile::OpenPath(
      Fixture("s2_fp32_dp2/checkpoint/global_step5/zero_pp_rank_0_mp_rank_00_optim_states.pt"));
  ASSERT_TRUE(file.ok()) << file.status();
  const Value* osd = file->root().Get("optimizer_state_dict");
  ASSERT_NE(osd, nullptr);
  EXPECT_TRUE(
      osd->Get("loss_scaler")->IsGlobal("deepspeed.runtime.fp16.loss_scaler", "LossScaler"));
  EXPECT_EQ(osd->Get("loss_scaler")->state()->Get("cur_scale")->float_value(), 1.0);
  const Value* stage = osd->Get("zero_stage");
  ASSERT_EQ(stage->kind(), ValueKind::kObject);
  const Value* mappings = osd->Get("param_slice_mappings");
  ASSERT_TRUE(mappings->is(ValueKind::kList));
  const Value* fragment = mappings->items()[0]->entries()[0].second;
  EXPECT_TRUE(fragment->IsGlobal("deepspeed.utils.tensor_fragment", "fragment_address"));
  EXPECT_TRUE(fragment->state()->Get("numel")->is(ValueKind::kInt));
}

// A torch file whose pickle describes a storage of 4 floats while its record holds 3.
TEST(TorchFileTest, StorageShorterThanItsTensorIsDataLoss) {
  ValueArena arena;
  std::vector<std::byte> data(16, std::byte{1});
  StorageRef* s = arena.NewStorage({"0", DType::kF32, "cpu", 4, false, Buffer::FromVector(data)});
  TensorRef t;
  t.storage = s;
  t.shape = Shape{4};
  t.stride = {1};
  const Value* root = arena.Tensor(t);
  MemorySink good;
  ASSERT_TRUE(WriteTorchFile(good, *root, {"x"}).ok());
  auto ok = TorchFile::Open(MemorySource(Buffer::FromVector(good.TakeBytes()), "good.pt"));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->TensorBytes(ok->root().tensor())->size(), 16u);

  // Same pickle, short record.
  auto pickle = ok->zip().Read(*ok->zip().Find("x/data.pkl"));
  MemorySink bad;
  zip::ZipWriter zw(&bad);
  ASSERT_TRUE(zw.AddRecord("x/data.pkl", pickle->span()).ok());
  ASSERT_TRUE(zw.AddRecord("x/data/0", absl::MakeConstSpan(data).subspan(0, 12)).ok());
  ASSERT_TRUE(zw.Finish().ok());
  auto refused = TorchFile::Open(MemorySource(Buffer::FromVector(bad.TakeBytes()), "bad.pt"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(refused.status().message().find("bad.pt: storage record x/data/0 has 12 bytes"),
            std::string::npos)
      << refused.status();
}

TEST(TorchFileTest, NotTorchFiles) {
  auto legacy = TorchFile::Open(MemorySource(Buffer::CopyOf(absl::string_view("\x80\x02\x8a\x0a"
                                                                              "abcdefgh",
                                                                              12)),
                                             "old.pt"));
  EXPECT_EQ(legacy.status().code(), absl::StatusCode::kUnimplemented);
  auto text = TorchFile::Open(MemorySource(Buffer::CopyOf(absl::string_view("hello")), "t.pt"));
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(text.status().message().find("t.pt"), std::string::npos);
}

}  // namespace
}  // namespace ucp::formats::torch
