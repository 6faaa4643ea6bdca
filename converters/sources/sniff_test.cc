// SniffCheckpoint's rules (sniff.h) on a real fixture (fixtures/deepspeed/s2_fp32_dp2) and on
// per-test copies of it: save folder, tag folder, UCP folder, latest_universal without latest,
// tags naming either kind, weights, and inputs that are neither a regular file nor a folder.
#include "converters/sources/sniff.h"

#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "formats/deepspeed/deepspeed_testutil.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::converters::sources {
namespace {

namespace fs = std::filesystem;
using formats::deepspeed::testing::FixtureCase;
using formats::deepspeed::testing::ScratchDir;
using ::testing::HasSubstr;
using ucp::SourceKind;

const std::string kCase = "s2_fp32_dp2";

std::string Checkpoint() { return FixtureCase(kCase) + "/checkpoint"; }

SniffedCheckpoint MustSniff(const std::string& path, const SniffOptions& options = {}) {
  absl::StatusOr<SniffedCheckpoint> s = SniffCheckpoint(path, options);
  EXPECT_TRUE(s.ok()) << path << ": " << s.status();
  return s.ok() ? *s : SniffedCheckpoint{};
}

// A copy of the fixture's save folder (latest, latest_universal, both tags) in a scratch folder.
fs::path CopySaveFolder(const ScratchDir& scratch) {
  const fs::path to = scratch.path() / "checkpoint";
  fs::copy(Checkpoint(), to, fs::copy_options::recursive);
  return to;
}

TEST(SniffCheckpoint, SaveFolderFollowsLatest) {
  const SniffedCheckpoint s = MustSniff(Checkpoint());
  EXPECT_EQ(s.kind, SourceKind::kZero);
  EXPECT_EQ(s.path, Checkpoint() + "/global_step5");
  EXPECT_EQ(s.root, Checkpoint());
  EXPECT_EQ(s.tag, "global_step5");
  EXPECT_THAT(s.why, HasSubstr("latest names global_step5"));
}

TEST(SniffCheckpoint, SaveFolderPreferringTheUniversalFollowsLatestUniversal) {
  SniffOptions options;
  options.prefer_universal = true;
  const SniffedCheckpoint s = MustSniff(Checkpoint(), options);
  EXPECT_EQ(s.kind, SourceKind::kUniversal);
  EXPECT_EQ(s.path, Checkpoint() + "/global_step5_universal");
  EXPECT_EQ(s.tag, "global_step5_universal");
}

TEST(SniffCheckpoint, TagAndUcpFolders) {
  const SniffedCheckpoint tag = MustSniff(Checkpoint() + "/global_step5");
  EXPECT_EQ(tag.kind, SourceKind::kZero);
  EXPECT_EQ(tag.path, Checkpoint() + "/global_step5");
  EXPECT_EQ(tag.root, Checkpoint());
  const SniffedCheckpoint ucp = MustSniff(Checkpoint() + "/global_step5_universal");
  EXPECT_EQ(ucp.kind, SourceKind::kUniversal);
  EXPECT_EQ(ucp.path, Checkpoint() + "/global_step5_universal");
}

TEST(SniffCheckpoint, TagSelectsEitherKind) {
  SniffOptions options;
  options.tag = "global_step5_universal";
  EXPECT_EQ(MustSniff(Checkpoint(), options).kind, SourceKind::kUniversal);
  options.tag = "global_step5";
  EXPECT_EQ(MustSniff(Checkpoint(), options).path, Checkpoint() + "/global_step5");
  // The tag folder itself, named by its tag.
  EXPECT_EQ(MustSniff(Checkpoint() + "/global_step5", options).kind, SourceKind::kZero);
  options.tag = "global_step9";
  absl::StatusOr<SniffedCheckpoint> missing = SniffCheckpoint(Checkpoint(), options);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("global_step9"));
  options.tag = "../x";
  EXPECT_EQ(SniffCheckpoint(Checkpoint(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Issue 16.12: a save folder with latest_universal and no latest is the UCP, for every verb.
TEST(SniffCheckpoint, LatestUniversalWithoutLatestIsTheUcp) {
  ScratchDir scratch;
  const fs::path save = CopySaveFolder(scratch);
  fs::remove(save / "latest");
  const SniffedCheckpoint s = MustSniff(save.string());
  EXPECT_EQ(s.kind, SourceKind::kUniversal);
  EXPECT_EQ(s.path, (save / "global_step5_universal").string());
  EXPECT_EQ(s.root, save.string());
  EXPECT_THAT(s.why, HasSubstr("latest_universal names global_step5_universal"));
  // latest_universal naming a folder that is not a UCP.
  fs::remove_all(save / "global_step5_universal" / "zero");
  absl::StatusOr<SniffedCheckpoint> bad = SniffCheckpoint(save.string());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(bad.status().message(), HasSubstr("latest_universal names 'global_step5_universal'"));
}

TEST(SniffCheckpoint, WeightsFilesAndFolders) {
  const std::string bin = FixtureCase(kCase) + "/fp32/pytorch_model.bin";
  const SniffedCheckpoint file = MustSniff(bin);
  EXPECT_EQ(file.kind, SourceKind::kTorchWeights);
  EXPECT_EQ(file.path, bin);
  EXPECT_EQ(MustSniff(FixtureCase(kCase) + "/fp32").kind, SourceKind::kTorchWeights);
  // A shard of a DeepSpeed checkpoint is not a weights file: its folder is the checkpoint.
  absl::StatusOr<SniffedCheckpoint> shard =
      SniffCheckpoint(Checkpoint() + "/global_step5/mp_rank_00_model_states.pt");
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(shard.status().message(),
              HasSubstr("pass its folder " + Checkpoint() + "/global_step5"));
}

TEST(SniffCheckpoint, NotACheckpointListsTheFolder) {
  ScratchDir scratch;
  fs::create_directories(scratch.path() / "sub");
  absl::StatusOr<SniffedCheckpoint> s = SniffCheckpoint(scratch.path().string());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("not a checkpoint"));
  EXPECT_THAT(s.status().message(), HasSubstr("found: sub/"));
  EXPECT_EQ(SniffCheckpoint("/nonexistent/ckpt").status().code(), absl::StatusCode::kNotFound);
}

// Issue 16.1: FIFOs (and links to them) are refused by name, never opened for a blocking read.
TEST(SniffCheckpoint, FifosAreRefusedByName) {
  ScratchDir scratch;
  const fs::path save = CopySaveFolder(scratch);
  const fs::path fifo = scratch.path() / "weights.bin";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  absl::StatusOr<SniffedCheckpoint> s = SniffCheckpoint(fifo.string());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr(fifo.string() + ": not a regular file"));
  fs::create_symlink(fifo, scratch.path() / "link.bin");
  s = SniffCheckpoint((scratch.path() / "link.bin").string());
  EXPECT_THAT(s.status().message(), HasSubstr("link.bin: not a regular file"));
  // A FIFO named `latest`, and one named `latest_universal`.
  fs::remove(save / "latest");
  ASSERT_EQ(::mkfifo((save / "latest").c_str(), 0600), 0);
  s = SniffCheckpoint(save.string());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr((save / "latest").string()));
  fs::remove(save / "latest");
  fs::remove(save / "latest_universal");
  ASSERT_EQ(::mkfifo((save / "latest_universal").c_str(), 0600), 0);
  s = SniffCheckpoint(save.string());
  EXPECT_THAT(s.status().message(), HasSubstr((save / "latest_universal").string()));
}

}  // namespace
}  // namespace ucp::converters::sources
