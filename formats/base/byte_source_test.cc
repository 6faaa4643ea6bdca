#include "formats/base/byte_source.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "formats/base/scratch_dir_testutil.h"
#include "gtest/gtest.h"

namespace ucp {
namespace {

TEST(ByteSourceTest, FileReadAtMappedAndUnmapped) {
  const testutil::ScratchDir scratch;
  std::string path = scratch.File("src");
  { std::ofstream(path) << "hello world"; }
  for (bool map : {true, false}) {
    auto src = OpenFileSource(path, map);
    ASSERT_TRUE(src.ok()) << src.status();
    EXPECT_EQ((*src)->Size(), 11u);
    EXPECT_EQ((*src)->Map().has_value(), map);
    std::string out(5, '\0');
    ASSERT_TRUE((*src)->ReadAt(6, {reinterpret_cast<std::byte*>(out.data()), 5}).ok());
    EXPECT_EQ(out, "world");
    auto buf = (*src)->ReadBuffer(0, 5);
    ASSERT_TRUE(buf.ok());
    EXPECT_EQ(buf->AsStringView(), "hello");
    EXPECT_EQ((*src)->ReadAt(7, {reinterpret_cast<std::byte*>(out.data()), 5}).code(),
              absl::StatusCode::kOutOfRange);
    EXPECT_EQ((*src)->ReadBuffer(UINT64_MAX, 2).status().code(), absl::StatusCode::kOutOfRange);
  }
  std::remove(path.c_str());
}

TEST(ByteSourceTest, MissingFileIsNotFound) {
  EXPECT_EQ(OpenFileSource("/nonexistent/x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(OpenFileSource("/").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ByteSourceTest, MemorySourceSlicesShareBytes) {
  auto src = MemorySource(Buffer::CopyOf(absl::string_view("abcdef")));
  auto buf = src->ReadBuffer(2, 3);
  ASSERT_TRUE(buf.ok());
  EXPECT_EQ(buf->AsStringView(), "cde");
  EXPECT_EQ(buf->data(), src->Map()->data() + 2);
}

TEST(ByteSourceTest, ReleaseRangeKeepsTheBytes) {
  // Pages dropped from a file mapping fault back in with the same bytes; memory sources ignore it.
  const testutil::ScratchDir scratch;
  const std::string path = scratch.File("release");
  std::string data(3 * 65536 + 123, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 + 7);
  std::ofstream(path, std::ios::binary) << data;
  absl::StatusOr<std::shared_ptr<ByteSource>> file = OpenFileSource(path, /*map=*/true);
  ASSERT_TRUE(file.ok());
  std::shared_ptr<ByteSource> memory = MemorySource(Buffer::CopyOf(data));
  for (const ByteSource* src : {file->get(), memory.get()}) {
    std::string out(data.size(), '\0');
    ASSERT_TRUE(src->ReadAt(0, absl::MakeSpan(reinterpret_cast<std::byte*>(out.data()), out.size())).ok());
    src->ReleaseRange(100, data.size() - 200);
    src->ReleaseRange(0, data.size() + 1);  // out of range: ignored
    std::string again(data.size(), '\0');
    ASSERT_TRUE(src->ReadAt(0, absl::MakeSpan(reinterpret_cast<std::byte*>(again.data()), again.size())).ok());
    EXPECT_EQ(again, data);
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace ucp
