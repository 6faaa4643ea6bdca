#include "ucp/torch_frame.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "formats/base/crc32.h"
#include "formats/torch/torch_file.h"
#include "formats/torch/torch_writer.h"
#include "gtest/gtest.h"
#include "ucp/ucp_layout.h"

namespace ucp {
namespace {

using formats::torch::TensorRef;
using formats::torch::TorchFile;

std::string Fixture(const std::string& rel) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return absl::StrCat(root != nullptr ? root : ".", "/fixtures/deepspeed/", rel);
}

// Assembles frame pieces and payloads into the whole file; checks that they tile it.
std::string Assemble(const TorchFrame& frame, const std::vector<std::string>& payloads) {
  std::vector<uint32_t> crcs;
  for (const std::string& p : payloads) crcs.push_back(Crc32(p));
  absl::StatusOr<std::vector<FramePiece>> pieces = RenderTorchFrame(frame, crcs);
  EXPECT_TRUE(pieces.ok()) << pieces.status();
  std::string out(frame.file_size, '\x55');
  uint64_t covered = 0;
  for (const FramePiece& p : *pieces) {
    out.replace(p.offset, p.bytes.size(), p.bytes);
    covered += p.bytes.size();
  }
  for (size_t i = 0; i < payloads.size(); ++i) {
    EXPECT_EQ(frame.storages[i].size, payloads[i].size());
    out.replace(frame.storages[i].payload_offset, payloads[i].size(), payloads[i]);
    covered += payloads[i].size();
  }
  EXPECT_EQ(covered, frame.file_size);
  return out;
}

std::string WriteWhole(const Value& root, const std::string& archive_root) {
  MemorySink sink;
  absl::Status s = formats::torch::WriteTorchFile(sink, root, {archive_root});
  EXPECT_TRUE(s.ok()) << s;
  return std::string(reinterpret_cast<const char*>(sink.bytes().data()), sink.bytes().size());
}

TEST(TorchFrameTest, FramePlusPayloadsEqualsTheTorchWriter) {
  // 0, 1 and 12 storages (12: key order 0, 1, 10, 11, 2, ...), including an empty storage.
  for (int n : {0, 1, 12}) {
    ValueArena arena;
    Value* list = arena.List();
    std::vector<std::string> payloads;
    for (int i = 0; i < n; ++i) {
      std::string bytes(static_cast<size_t>(i == 3 ? 0 : 4 * (i * 37 + 1)), '\0');
      for (size_t b = 0; b < bytes.size(); ++b) bytes[b] = static_cast<char>((b * 7 + i) & 0xff);
      StorageRef s;
      s.key = absl::StrCat(i);
      s.dtype = DType::kF32;
      s.location = "cpu";
      s.numel = static_cast<int64_t>(bytes.size() / 4);
      s.bytes = Buffer::CopyOf(bytes);
      TensorRef t;
      t.storage = arena.NewStorage(s);
      t.shape = Shape({s.numel});
      t.stride = {1};
      ValueArena::Append(list, arena.Tensor(t));
      payloads.push_back(bytes);
    }
    std::vector<const StorageRef*> storages;
    absl::StatusOr<TorchFrame> frame = FrameTorchFile("archive", *list, &storages);
    ASSERT_TRUE(frame.ok()) << frame.status();
    ASSERT_EQ(storages.size(), static_cast<size_t>(n));
    std::vector<std::string> ordered;
    for (const StorageRef* s : storages) ordered.push_back(std::string(s->bytes->AsStringView()));
    EXPECT_EQ(Assemble(*frame, ordered), WriteWhole(*list, "archive")) << n << " storages";
  }
}

TEST(TorchFrameTest, ParamStateFileIsByteIdenticalToDeepSpeeds) {
  for (const char* rel :
       {"s1_fp32_dp2/checkpoint/global_step5_universal/zero/embed.weight/fp32.pt",
        "s3_fp32_dp2/checkpoint/global_step5_universal/zero/embed.weight/exp_avg.pt"}) {
    absl::StatusOr<TorchFile> original = TorchFile::OpenPath(Fixture(rel));
    ASSERT_TRUE(original.ok()) << original.status();
    const Value& root = original->root();
    const Value* param = root.is_dict() ? root.Get("param") : &root;
    ASSERT_NE(param, nullptr);
    const TensorRef& t = param->tensor();
    ParamStateSpec spec;
    spec.form = root.is_dict() ? ParamFileForm::kDict : ParamFileForm::kRawTensor;
    spec.shape = t.shape;
    spec.storage_numel = t.storage->numel;
    spec.requires_grad = t.requires_grad;
    ValueArena arena;
    absl::StatusOr<ParamStateTree> tree = BuildParamStateTree(arena, spec);
    ASSERT_TRUE(tree.ok()) << tree.status();
    absl::StatusOr<TorchFrame> frame = FrameTorchFile(ArchiveRootFor(rel), *tree->root, nullptr);
    ASSERT_TRUE(frame.ok()) << frame.status();
    absl::StatusOr<Buffer> payload = original->StorageBytes(*t.storage);
    ASSERT_TRUE(payload.ok());
    absl::StatusOr<Buffer> whole =
        original->zip().source().ReadBuffer(0, original->zip().source().Size());
    ASSERT_TRUE(whole.ok());
    EXPECT_EQ(Assemble(*frame, {std::string(payload->AsStringView())}),
              std::string(whole->AsStringView()))
        << rel;
  }
}

TEST(TorchFrameTest, RejectsWrongCrcCountAndBadRoots) {
  absl::StatusOr<TorchFrame> frame = LayoutTorchFrame("x", "\x80\x02N.", {4, 8});
  ASSERT_TRUE(frame.ok());
  EXPECT_EQ(RenderTorchFrame(*frame, {1u}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(LayoutTorchFrame("", "N.", {}).ok());
  EXPECT_FALSE(LayoutTorchFrame("a/b", "N.", {}).ok());
}

TEST(TorchFrameTest, PayloadsAreAlignedAndLargeSizesNeedNoMemory) {
  // A 5 GiB storage (ZIP64 sizes) is framed without allocating its payload.
  absl::StatusOr<TorchFrame> frame = LayoutTorchFrame("big", "\x80\x02N.", {uint64_t{5} << 30, 3});
  ASSERT_TRUE(frame.ok()) << frame.status();
  for (const TorchFrame::Storage& s : frame->storages) EXPECT_EQ(s.payload_offset % 64, 0u);
  EXPECT_GT(frame->file_size, (uint64_t{5} << 30) + 3);
  absl::StatusOr<std::vector<FramePiece>> pieces =
      RenderTorchFrame(*frame, {0x12345678u, 0x9abcdef0u});
  ASSERT_TRUE(pieces.ok());
  uint64_t fixed = 0;
  for (const FramePiece& p : *pieces) fixed += p.bytes.size();
  EXPECT_EQ(fixed + (uint64_t{5} << 30) + 3, frame->file_size);
}

}  // namespace
}  // namespace ucp
