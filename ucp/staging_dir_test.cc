#include "ucp/staging_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "formats/base/scratch_dir_testutil.h"
#include "gtest/gtest.h"
#include "ucp/ucp_layout.h"

namespace ucp::store {
namespace {

namespace fs = std::filesystem;

class StagingDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = testutil::ScratchDir::Make("");
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string Out() const { return (root_ / "ckpt" / "global_step5_universal").string(); }
  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  fs::path root_;
};

TEST_F(StagingDirTest, NothingAppearsAtTheOutputUntilCommit) {
  absl::StatusOr<std::unique_ptr<StagingDirectory>> dir = StagingDirectory::Create(Out() + "/", {.fsync = false});
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ((*dir)->path(), Out() + ".partial");
  ASSERT_TRUE((*dir)->MakeDirs({"zero/embed.weight"}).ok());
  std::ofstream((*dir)->path() + "/zero/embed.weight/fp32.pt") << "x";
  EXPECT_FALSE(fs::exists(Out()));
  Manifest m;
  m.files.push_back({"zero/embed.weight/fp32.pt", 1, 0});
  ASSERT_TRUE((*dir)->Commit(m).ok());
  EXPECT_TRUE(fs::exists(Out() + "/zero/embed.weight/fp32.pt"));
  EXPECT_TRUE(fs::exists(Out() + "/" + std::string(kManifestFile)));
  EXPECT_FALSE(fs::exists(Out() + "/" + std::string(kPartialMarker)));
  EXPECT_FALSE(fs::exists(Out() + ".partial"));
  ASSERT_TRUE(WriteLatestUniversal(Out() + "/", false).ok());
  EXPECT_EQ(Read((root_ / "ckpt" / "latest_universal").string()), "global_step5_universal");
}

TEST_F(StagingDirTest, DroppingWithoutCommitRemovesEverything) {
  {
    absl::StatusOr<std::unique_ptr<StagingDirectory>> dir = StagingDirectory::Create(Out(), {.fsync = false});
    ASSERT_TRUE(dir.ok());
    ASSERT_TRUE((*dir)->MakeDirs({"zero/a"}).ok());
  }
  EXPECT_FALSE(fs::exists(Out()));
  EXPECT_FALSE(fs::exists(Out() + ".partial"));
}

TEST_F(StagingDirTest, ExistingOutputNeedsForceAndIsReplaced) {
  fs::create_directories(Out());
  std::ofstream(Out() + "/old.pt") << "old";
  EXPECT_EQ(StagingDirectory::Create(Out()).status().code(), absl::StatusCode::kAlreadyExists);
  absl::StatusOr<std::unique_ptr<StagingDirectory>> dir =
      StagingDirectory::Create(Out(), {.force = true, .fsync = false});
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE((*dir)->Commit({}).ok());
  EXPECT_FALSE(fs::exists(Out() + "/old.pt"));
  EXPECT_TRUE(fs::exists(Out() + "/" + std::string(kManifestFile)));
  for (const auto& e : fs::directory_iterator(root_ / "ckpt")) {
    EXPECT_EQ(e.path().filename().string().find(".replaced"), std::string::npos) << e.path();
  }
}

TEST_F(StagingDirTest, StalePartialOfADeadRunIsRemoved) {
  fs::create_directories(Out() + ".partial/zero/x");
  std::ofstream(Out() + ".partial/" + std::string(kPartialMarker)) << "ucp staging folder of process 1\n";
  std::ofstream(Out() + ".partial/zero/x/fp32.pt") << "half";
  absl::StatusOr<std::unique_ptr<StagingDirectory>> dir = StagingDirectory::Create(Out(), {.fsync = false});
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_TRUE((*dir)->removed_stale());
  EXPECT_FALSE(fs::exists(Out() + ".partial/zero/x/fp32.pt"));
}

TEST_F(StagingDirTest, BusyOrForeignPartialIsRefused) {
  absl::StatusOr<std::unique_ptr<StagingDirectory>> first = StagingDirectory::Create(Out(), {.fsync = false});
  ASSERT_TRUE(first.ok());
  absl::StatusOr<std::unique_ptr<StagingDirectory>> second = StagingDirectory::Create(Out(), {.fsync = false});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("another ucp process"), std::string::npos) << second.status();
  EXPECT_TRUE(fs::exists(Out() + ".partial/" + std::string(kPartialMarker)));  // the first one's is intact
  first->reset();

  fs::create_directories(Out() + ".partial");
  std::ofstream(Out() + ".partial/precious.txt") << "not ucp's";
  absl::StatusOr<std::unique_ptr<StagingDirectory>> third = StagingDirectory::Create(Out(), {.fsync = false});
  EXPECT_EQ(third.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(fs::exists(Out() + ".partial/precious.txt"));
}

}  // namespace
}  // namespace ucp::store
