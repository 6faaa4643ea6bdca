#include "formats/base/byte_source.h"

#include <sys/stat.h>
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

// Issue 16.1: a FIFO (or a link to one) is refused by name at once; opening it for reading
// without O_NONBLOCK would wait for a writer forever (this test would hang).
TEST(ByteSourceTest, FifosAreRefusedWithoutBlocking) {
  const testutil::ScratchDir scratch;
  const std::string fifo = scratch.File("fifo");
  const std::string link = scratch.File("link");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ASSERT_EQ(::symlink(fifo.c_str(), link.c_str()), 0);
  for (const std::string& path : {fifo, link}) {
    for (bool map : {true, false}) {
      absl::StatusOr<std::shared_ptr<ByteSource>> src = OpenFileSource(path, map);
      EXPECT_EQ(src.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(src.status().message(), path + ": not a regular file");
    }
    EXPECT_EQ(ReadSmallFile(path, 100).status().code(), absl::StatusCode::kInvalidArgument);
  }
  std::remove(link.c_str());
  std::remove(fifo.c_str());
}

TEST(ByteSourceTest, ReadSmallFileHonoursItsLimit) {
  const testutil::ScratchDir scratch;
  const std::string path = scratch.File("small");
  { std::ofstream(path) << "global_step5\n"; }
  absl::StatusOr<std::string> text = ReadSmallFile(path, 13);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "global_step5\n");
  EXPECT_EQ(ReadSmallFile(path, 12).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadSmallFile("/nonexistent/x", 12).status().code(), absl::StatusCode::kNotFound);
  std::remove(path.c_str());
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
    ASSERT_TRUE(
        src->ReadAt(0, absl::MakeSpan(reinterpret_cast<std::byte*>(out.data()), out.size())).ok());
    src->ReleaseRange(100, data.size() - 200);
    src->ReleaseRange(0, data.size() + 1);  // out of range: ignored
    std::string again(data.size(), '\0');
    ASSERT_TRUE(
        src->ReadAt(0, absl::MakeSpan(reinterpret_cast<std::byte*>(again.data()), again.size()))
            .ok());
    EXPECT_EQ(again, data);
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace ucp
