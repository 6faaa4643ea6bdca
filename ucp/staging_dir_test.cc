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

namespace ucp {
namespace {

namespace fs = std::filesystem;

class StagingDirTest : public ::testing::Test {
 protected:
  void SetUp() override { root_ = testutil::ScratchDir::Make(""); }
  void TearDown() override { fs::remove_all(root_); }
  std::string Out() const { return (root_ / "ckpt" / "global_step5_universal").string(); }
  std::string Partial() const { return StagingPathFor(Out()); }
  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  fs::path root_;
};

TEST_F(StagingDirTest, NothingAppearsAtTheOutputUntilCommit) {
  absl::StatusOr<std::unique_ptr<StagingDirectory>> dir =
      StagingDirectory::Create(Out() + "/", {.fsync = false});
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ((*dir)->path(), Partial());
  ASSERT_TRUE((*dir)->MakeDirs({"zero/embed.weight"}).ok());
  std::ofstream((*dir)->path() + "/zero/embed.weight/fp32.pt") << "x";
  EXPECT_FALSE(fs::exists(Out()));
  Manifest m;
  m.files.push_back({"zero/embed.weight/fp32.pt", 1, 0});
  ASSERT_TRUE((*dir)->Commit(m).ok());
  EXPECT_TRUE(fs::exists(Out() + "/zero/embed.weight/fp32.pt"));
  EXPECT_TRUE(fs::exists(Out() + "/" + std::string(kManifestFile)));
  EXPECT_FALSE(fs::exists(Out() + "/" + std::string(kPartialMarker)));
  EXPECT_FALSE(fs::exists(Partial()));
  ASSERT_TRUE(WriteLatestUniversal(Out() + "/", false).ok());
  EXPECT_EQ(Read((root_ / "ckpt" / "latest_universal").string()), "global_step5_universal");
}

TEST_F(StagingDirTest, DroppingWithoutCommitRemovesEverything) {
  {
    absl::StatusOr<std::unique_ptr<StagingDirectory>> dir =
        StagingDirectory::Create(Out(), {.fsync = false});
    ASSERT_TRUE(dir.ok());
    ASSERT_TRUE((*dir)->MakeDirs({"zero/a"}).ok());
  }
  EXPECT_FALSE(fs::exists(Out()));
  EXPECT_FALSE(fs::exists(Partial()));
}

TEST_F(StagingDirTest, ExistingOutputNeedsForceAndIsReplaced) {
  fs::create_directories(Out());
  std::ofstream(Out() + "/old.pt") << "old";
  Manifest old;
  old.files.push_back({"old.pt", 3, 0});
  std::ofstream(Out() + "/" + std::string(kManifestFile)) << ManifestToJson(old);
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
  fs::create_directories(Partial() + "/zero/x");
  std::ofstream(Partial() + "/" + std::string(kPartialMarker))
      << "ucp staging folder of process 1\n";
  std::ofstream(Partial() + "/zero/x/fp32.pt") << "half";
  absl::StatusOr<std::unique_ptr<StagingDirectory>> dir =
      StagingDirectory::Create(Out(), {.fsync = false});
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_TRUE((*dir)->removed_stale());
  EXPECT_FALSE(fs::exists(Partial() + "/zero/x/fp32.pt"));
}

TEST_F(StagingDirTest, BusyOrForeignPartialIsRefused) {
  absl::StatusOr<std::unique_ptr<StagingDirectory>> first =
      StagingDirectory::Create(Out(), {.fsync = false});
  ASSERT_TRUE(first.ok());
  absl::StatusOr<std::unique_ptr<StagingDirectory>> second =
      StagingDirectory::Create(Out(), {.fsync = false});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("another ucp process"), std::string::npos)
      << second.status();
  EXPECT_TRUE(
      fs::exists(Partial() + "/" + std::string(kPartialMarker)));  // the first one's is intact
  first->reset();

  fs::create_directories(Partial());
  std::ofstream(Partial() + "/precious.txt") << "not ucp's";
  absl::StatusOr<std::unique_ptr<StagingDirectory>> third =
      StagingDirectory::Create(Out(), {.fsync = false});
  EXPECT_EQ(third.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(fs::exists(Partial() + "/precious.txt"));
}

TEST_F(StagingDirTest, StagingNameIsShortAndBesideTheOutput) {
  EXPECT_EQ(StagingPathFor("a/b/out/"), StagingPathFor("a/b/out"));
  EXPECT_NE(StagingPathFor("a/b/out"), StagingPathFor("a/b/out2"));
  EXPECT_EQ(StagingPathFor("out").rfind("./.ucp-", 0), 0u) << StagingPathFor("out");
  EXPECT_EQ(StagingPathFor("/out").rfind("/.ucp-", 0), 0u) << StagingPathFor("/out");
  // A 255-byte output name (the longest a folder may have) still gets a staging folder.
  const std::string out = (root_ / std::string(255, 'n')).string();
  absl::StatusOr<std::unique_ptr<StagingDirectory>> dir =
      StagingDirectory::Create(out, {.fsync = false});
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(fs::path((*dir)->path()).filename().string().size(), 29u) << (*dir)->path();
  ASSERT_TRUE((*dir)->Commit({}).ok());
  EXPECT_TRUE(fs::exists(out + "/" + std::string(kManifestFile)));
}

TEST_F(StagingDirTest, AnEmptyFolderIsTakenOverWithoutForce) {
  fs::create_directories(Out());
  absl::StatusOr<std::unique_ptr<StagingDirectory>> dir =
      StagingDirectory::Create(Out(), {.fsync = false});
  ASSERT_TRUE(dir.ok()) << dir.status();
  ASSERT_TRUE((*dir)->Commit({}).ok());
  EXPECT_TRUE(fs::exists(Out() + "/" + std::string(kManifestFile)));
}

TEST_F(StagingDirTest, ForceRefusesWhatUcpDidNotWrite) {
  // No manifest: not ucp's.
  fs::create_directories(Out() + "/global_step5");
  std::ofstream(Out() + "/global_step5/mp_rank_00_model_states.pt") << "precious";
  absl::Status s = StagingDirectory::Create(Out(), {.force = true, .fsync = false}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("--force would delete " + Out()), std::string::npos) << s;
  // A ucp output that later got a file ucp did not write (DeepSpeed saved a new tag into it).
  Manifest m;
  m.files.push_back({"global_step5/mp_rank_00_model_states.pt", 8, 0});
  std::ofstream(Out() + "/" + std::string(kManifestFile)) << ManifestToJson(m);
  fs::create_directories(Out() + "/global_step10");
  std::ofstream(Out() + "/global_step10/mp_rank_00_model_states.pt") << "newer";
  s = StagingDirectory::Create(Out(), {.force = true, .fsync = false}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("global_step10/mp_rank_00_model_states.pt"), std::string::npos) << s;
  EXPECT_FALSE(fs::exists(Partial()));
  // A plain file at the output.
  const std::string file = (root_ / "file").string();
  std::ofstream(file) << "x";
  EXPECT_EQ(StagingDirectory::Create(file, {.force = true}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(std::string(Read(file)), "x");
  EXPECT_EQ(Read(Out() + "/global_step5/mp_rank_00_model_states.pt"), "precious");
}

TEST_F(StagingDirTest, OutputOverlappingAnInputIsRefusedEvenWithForce) {
  const std::string save = (root_ / "ckpt").string();
  const std::string tag = save + "/global_step5";
  fs::create_directories(tag);
  std::ofstream(tag + "/mp_rank_00_model_states.pt") << "precious";
  std::ofstream(save + "/latest") << "global_step5";
  fs::create_symlink(tag, root_ / "link");
  const std::vector<std::string> inputs = {tag, tag + "/mp_rank_00_model_states.pt"};
  for (const std::string& out :
       {tag, tag + "/", save, root_.string(), tag + "/sub", save + "/../ckpt",
        (root_ / "link").string(), (root_ / "link" / "x").string(),
        tag + "/mp_rank_00_model_states.pt"}) {
    for (bool force : {false, true}) {
      absl::Status s =
          StagingDirectory::Create(
              out, {.force = force, .fsync = false, .inputs = inputs, .save_folders = {save}})
              .status();
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument)
          << out << " force=" << force << ": " << s;
      EXPECT_NE(s.message().find("refused with or without --force"), std::string::npos) << s;
    }
  }
  // Beside the tag folder, inside the save folder: where DeepSpeed puts its UCP.
  absl::StatusOr<std::unique_ptr<StagingDirectory>> ok = StagingDirectory::Create(
      save + "/global_step5_universal", {.fsync = false, .inputs = inputs, .save_folders = {save}});
  EXPECT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(Read(tag + "/mp_rank_00_model_states.pt"), "precious");
}

}  // namespace
}  // namespace ucp
