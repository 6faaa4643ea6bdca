#include "formats/base/byte_sink.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "formats/base/scratch_dir_testutil.h"
#include "gtest/gtest.h"

namespace ucp {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int CountEntries(const std::string& dir) {
  int n = 0;
  DIR* d = ::opendir(dir.c_str());
  while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n;
}

TEST(ByteSinkTest, CommitPublishesAtomically) {
  const testutil::ScratchDir scratch;
  const std::string dir = scratch.path().string();
  std::string path = dir + "/out.bin";
  {
    auto sink = CreateFileSink(path);
    ASSERT_TRUE(sink.ok());
    ASSERT_TRUE((*sink)->Append("hello").ok());
    ASSERT_TRUE((*sink)->WriteAt(0, {reinterpret_cast<const std::byte*>("J"), 1}).ok());
    EXPECT_EQ((*sink)->Size(), 5u);
    EXPECT_FALSE(std::ifstream(path).good());  // not visible before Commit
    ASSERT_TRUE((*sink)->Commit().ok());
  }
  EXPECT_EQ(ReadAll(path), "Jello");
  EXPECT_EQ(CountEntries(dir), 1);
}

TEST(ByteSinkTest, DroppedSinkLeavesNothing) {
  const testutil::ScratchDir scratch;
  const std::string dir = scratch.path().string();
  {
    auto sink = CreateFileSink(dir + "/out.bin");
    ASSERT_TRUE(sink.ok());
    ASSERT_TRUE((*sink)->Append("partial").ok());
  }
  EXPECT_EQ(CountEntries(dir), 0);
}

TEST(ByteSinkTest, NoOverwrite) {
  const testutil::ScratchDir scratch;
  const std::string dir = scratch.path().string();
  std::string path = dir + "/out.bin";
  { std::ofstream(path) << "old"; }
  auto sink = CreateFileSink(path, {.overwrite = false, .fsync = false});
  ASSERT_TRUE(sink.ok());
  ASSERT_TRUE((*sink)->Append("new").ok());
  EXPECT_EQ((*sink)->Commit().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadAll(path), "old");
}

TEST(ByteSinkTest, MemorySink) {
  MemorySink sink;
  ASSERT_TRUE(sink.WriteAt(3, {reinterpret_cast<const std::byte*>("xy"), 2}).ok());
  EXPECT_EQ(sink.Size(), 5u);
  ASSERT_TRUE(sink.Commit().ok());
  EXPECT_FALSE(sink.Append("z").ok());
}

}  // namespace
}  // namespace ucp
