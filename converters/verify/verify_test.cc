// VerifyCheckpoint over the fixtures (clean: no problems) and over broken scratch copies of them:
// a shard from another step, swapped ranks, a truncated file, a missing expert file, a damaged UCP
// file. Each problem must be found and name the file.
#include "converters/verify/verify.h"

#include <filesystem>
#include <fstream>

#include "converters/pipelines/convert.h"
#include "formats/deepspeed/deepspeed_testutil.h"
#include "gtest/gtest.h"
#include "ucp/manifest.h"

namespace ucp::converters::verify {
namespace {

namespace fs = std::filesystem;
using formats::deepspeed::testing::FixtureCase;
using formats::deepspeed::testing::ScratchDir;

constexpr const char* kShard0 = "zero_pp_rank_0_mp_rank_00_optim_states.pt";
constexpr const char* kShard1 = "zero_pp_rank_1_mp_rank_00_optim_states.pt";

VerifyReport Verify(const fs::path& dir) {
  absl::StatusOr<VerifyReport> report = VerifyCheckpoint(dir.string());
  EXPECT_TRUE(report.ok()) << report.status();
  return report.ok() ? *report : VerifyReport{};
}

// True when some problem of `check` names `file` and its message contains `text`.
bool HasProblem(const VerifyReport& report, const std::string& check, const std::string& file,
                const std::string& text = "") {
  for (const Problem& p : report.problems) {
    if (p.check == check && p.file == file && p.message.find(text) != std::string::npos)
      return true;
  }
  return false;
}

class CleanFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(CleanFixture, ZeroFolderHasNoProblems) {
  const VerifyReport report = Verify(fs::path(FixtureCase(GetParam())) / "checkpoint");
  EXPECT_TRUE(report.ok()) << ReportToText(report);
  EXPECT_TRUE(report.complete()) << ReportToText(report);
  EXPECT_EQ(report.kind, "zero");
  EXPECT_GT(report.files_checked, 1);
  EXPECT_GT(report.params_checked, 10);
}

TEST_P(CleanFixture, DeepSpeedUniversalHasNoProblems) {
  const VerifyReport report =
      Verify(fs::path(FixtureCase(GetParam())) / "checkpoint/global_step5_universal");
  EXPECT_TRUE(report.ok()) << ReportToText(report);
  EXPECT_TRUE(report.complete()) << ReportToText(report);
  EXPECT_EQ(report.kind, "universal");
  EXPECT_GT(report.params_checked, 10);
  ASSERT_EQ(report.notes.size(), 1u);  // DeepSpeed writes no manifest
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CleanFixture,
                         ::testing::Values("s1_fp32_dp2", "s1_fp32_dp4", "s1_bf16opt_dp4",
                                           "s2_fp32_dp2", "s2_fp32_dp4", "s2_bf16_dp2",
                                           "s3_fp32_dp2", "s3_fp32_dp4", "s3_fp32_1group_dp4",
                                           "autoep_mixtral_s2_fp32_dp4_ep2",
                                           "autoep_qwen3_s3_fp32_dp4_ep2", "s3_bf16_dp1",
                                           "s3_bf16_dp2", "s3_bf16_dp4", "s1_bf16_dp2"));

// Tensor-parallel (mp_rank_00/01) checkpoints and their UCP: param_shapes hold TP slices.
TEST(CleanTensorParallel, ZeroAndUniversalHaveNoProblems) {
  const fs::path tp = fs::path(FixtureCase("")).parent_path().parent_path() / "tp";
  for (const char* name : {"s1_fp32_tp2", "s2_bf16_tp2_dp2", "s2_fp32_tp2_dp2_subparams"}) {
    for (const char* sub : {"checkpoint", "checkpoint/global_step5_universal"}) {
      const VerifyReport report = Verify(tp / name / sub);
      EXPECT_TRUE(report.ok()) << name << "/" << sub << "\n" << ReportToText(report);
      EXPECT_TRUE(report.complete()) << name << "/" << sub << "\n" << ReportToText(report);
    }
  }
}

TEST(BrokenZero, ShardFromAnotherStep) {
  ScratchDir scratch;
  const fs::path tag = scratch.CopyTag("s1_fp32_dp2");
  fs::copy_file(
      fs::path(FixtureCase("s1_fp32_dp4")) / "resume_dp2/checkpoint/global_step8" / kShard1,
      tag / kShard1, fs::copy_options::overwrite_existing);
  const VerifyReport report = Verify(tag);
  EXPECT_TRUE(HasProblem(report, "step", kShard1, "optimizer step 8")) << ReportToText(report);
  EXPECT_TRUE(HasProblem(report, "index", kShard1, "step")) << ReportToText(report);
}

TEST(BrokenZero, SwappedRanks) {
  ScratchDir scratch;
  const fs::path tag = scratch.CopyTag("s2_fp32_dp2");
  fs::rename(tag / kShard0, tag / "tmp");
  fs::rename(tag / kShard1, tag / kShard0);
  fs::rename(tag / "tmp", tag / kShard1);
  const VerifyReport report = Verify(tag);
  ASSERT_FALSE(report.ok());
  EXPECT_TRUE(HasProblem(report, "index", kShard0, "param_slice_mappings")) << ReportToText(report);
}

TEST(BrokenZero, TruncatedFileAndMissingRankBothNamed) {
  ScratchDir scratch;
  const fs::path tag = scratch.CopyTag("s2_fp32_dp4");
  fs::resize_file(tag / kShard1, fs::file_size(tag / kShard1) / 2);
  fs::remove(tag / "zero_pp_rank_3_mp_rank_00_optim_states.pt");
  const VerifyReport report = Verify(tag);
  EXPECT_TRUE(HasProblem(report, "file", kShard1)) << ReportToText(report);
  EXPECT_TRUE(
      HasProblem(report, "files", "zero_pp_rank_3_mp_rank_00_optim_states.pt", "dp rank 3 (of 4)"))
      << ReportToText(report);
}

TEST(BrokenZero, CorruptRecordFailsCrc) {
  ScratchDir scratch;
  const fs::path tag = scratch.CopyTag("s2_fp32_dp2");
  {
    std::fstream f(tag / kShard0, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(tag / kShard0) / 2));
    f.put('\x5a').put('\xa5');
  }
  const VerifyReport report = Verify(tag);
  EXPECT_TRUE(HasProblem(report, "file", kShard0)) << ReportToText(report);
}

TEST(BrokenZero, MissingExpertFile) {
  ScratchDir scratch;
  const fs::path tag = scratch.CopyTag("autoep_mixtral_s2_fp32_dp4_ep2");
  fs::remove(tag / "layer_1_expert_2_mp_rank_00_model_states.pt");
  const VerifyReport report = Verify(tag);
  EXPECT_TRUE(HasProblem(report, "files", "layer_1_expert_2_mp_rank_00_model_states.pt",
                         "expert 2 of MoE layer 1"))
      << ReportToText(report);
}

TEST(BrokenZero, NotACheckpointIsAnError) {
  ScratchDir scratch;
  EXPECT_EQ(VerifyCheckpoint((scratch.path() / "nothing").string()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(VerifyCheckpoint(scratch.path().string()).ok());  // an empty folder
}

TEST(BrokenUniversal, MissingStateShapeMismatchAndExtraFolder) {
  ScratchDir scratch;
  const fs::path ucp = scratch.CopyTag("s2_fp32_dp2", "checkpoint/global_step5_universal");
  fs::remove(ucp / "zero/blocks.0.fc1.weight/exp_avg.pt");
  fs::copy_file(ucp / "zero/blocks.0.fc1.bias/fp32.pt",
                ucp / "zero/blocks.0.fc2.weight/exp_avg_sq.pt",
                fs::copy_options::overwrite_existing);
  fs::remove_all(ucp / "zero/ln_f.bias");
  const VerifyReport report = Verify(ucp);
  EXPECT_TRUE(HasProblem(report, "param", "zero/blocks.0.fc1.weight/exp_avg.pt", "no exp_avg.pt"))
      << ReportToText(report);
  EXPECT_TRUE(HasProblem(report, "param", "zero/blocks.0.fc2.weight/exp_avg_sq.pt", "shape"))
      << ReportToText(report);
  EXPECT_TRUE(HasProblem(report, "model", "zero/ln_f.bias", "no such folder"))
      << ReportToText(report);
}

TEST(BrokenUniversal, StepOfAnotherSave) {
  ScratchDir scratch;
  const fs::path ucp = scratch.CopyTag("s2_fp32_dp2", "checkpoint/global_step5_universal");
  fs::copy_file(
      fs::path(FixtureCase("s2_fp32_dp4")) / "resume_dp2/checkpoint/global_step8" / kShard0,
      ucp / "zero/embed.weight/step.pt", fs::copy_options::overwrite_existing);
  const VerifyReport report = Verify(ucp);
  EXPECT_TRUE(HasProblem(report, "param", "zero/embed.weight/step.pt")) << ReportToText(report);
}

TEST(BrokenUniversal, ManifestNamesTheChangedFile) {
  ScratchDir scratch;
  const fs::path ucp = scratch.CopyTag("s3_fp32_dp2", "checkpoint/global_step5_universal");
  ucp::Manifest manifest;
  absl::StatusOr<std::vector<std::string>> files = ucp::ListFiles(ucp.string());
  ASSERT_TRUE(files.ok()) << files.status();
  for (const std::string& file : *files) {
    absl::StatusOr<ucp::ManifestEntry> entry = ucp::HashFile(ucp.string(), file);
    ASSERT_TRUE(entry.ok()) << entry.status();
    manifest.files.push_back(*entry);
  }
  std::ofstream(ucp / "ucp_manifest.json") << ucp::ManifestToJson(manifest);
  EXPECT_TRUE(Verify(ucp).ok()) << ReportToText(Verify(ucp));

  const fs::path fp32 = ucp / "zero/embed.weight/fp32.pt";
  {
    std::fstream f(fp32, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(fp32) / 2));
    f.put('\x5a');
  }
  const VerifyReport report = Verify(ucp);
  EXPECT_TRUE(HasProblem(report, "manifest", "zero/embed.weight/fp32.pt", "CRC-32"))
      << ReportToText(report);
  EXPECT_TRUE(HasProblem(report, "file", "zero/embed.weight/fp32.pt")) << ReportToText(report);
}

// True when some skipped check of `check` names `file` and its reason contains `text`.
bool HasSkipped(const VerifyReport& report, const std::string& check, const std::string& file,
                const std::string& text = "") {
  for (const Skipped& s : report.skipped) {
    if (s.check == check && s.file == file && s.reason.find(text) != std::string::npos) return true;
  }
  return false;
}

// Files no check reads are named as skipped (the report is incomplete), not passed over.
TEST(Incomplete, FilesVerifyDoesNotKnowAreSkipped) {
  ScratchDir scratch;
  const fs::path tag = scratch.CopyTag("s2_fp32_dp2");
  std::ofstream(tag / "notes.txt") << "x";
  VerifyReport report = Verify(tag);
  EXPECT_TRUE(report.ok()) << ReportToText(report);
  EXPECT_FALSE(report.complete());
  EXPECT_TRUE(HasSkipped(report, "file", "notes.txt", "not checked")) << ReportToText(report);
  EXPECT_NE(ReportToText(report).find("no problem found; INCOMPLETE: 1 check(s) skipped"),
            std::string::npos);
  const nlohmann::json j = ReportToJson(report);
  EXPECT_EQ(j["complete"], false);
  EXPECT_EQ(j["skipped"][0]["file"], "notes.txt");

  const fs::path ucp = scratch.CopyTag("s2_fp32_dp2", "checkpoint/global_step5_universal");
  std::ofstream(ucp / "zero/embed.weight/fp16.pt") << "x";
  std::ofstream(ucp / "zero/README") << "x";
  std::ofstream(ucp / "extra.bin") << "x";
  report = Verify(ucp);
  EXPECT_TRUE(report.ok()) << ReportToText(report);
  EXPECT_TRUE(HasSkipped(report, "file", "zero/embed.weight/fp16.pt")) << ReportToText(report);
  EXPECT_TRUE(HasSkipped(report, "file", "zero/README")) << ReportToText(report);
  EXPECT_TRUE(HasSkipped(report, "file", "extra.bin")) << ReportToText(report);
  EXPECT_EQ(report.skipped.size(), 3u);
}

TEST(Incomplete, NvmeOffloadedStateIsSkippedNotAProblem) {
  ScratchDir scratch;
  const fs::path tag = scratch.CopyTag("s2_fp32_dp2");
  fs::create_directories(tag / "offloaded_tensors");
  const VerifyReport report = Verify(tag);
  EXPECT_TRUE(report.ok()) << ReportToText(report);
  EXPECT_TRUE(HasSkipped(report, "files", "", "NVMe")) << ReportToText(report);
}

// A UCP converted from ZeRO-0 has param_shapes None: the model check cannot be made (and its
// param_groups are no problem).
TEST(Incomplete, UniversalFromZero0HasNoParamShapes) {
  ScratchDir scratch;
  pipelines::ConvertOptions convert;
  convert.input = (fs::path(FixtureCase("")).parent_path().parent_path() /
                   "deepspeed_extra/s0_fp32_dp2/checkpoint")
                      .string();
  convert.output = (scratch.path() / "ucp").string();
  convert.write_latest = false;
  convert.execute.fsync = false;
  ASSERT_TRUE(pipelines::Convert(convert).ok());
  const VerifyReport report = Verify(convert.output);
  EXPECT_TRUE(report.ok()) << ReportToText(report);
  EXPECT_TRUE(HasSkipped(report, "model", "", "no param_shapes")) << ReportToText(report);
}

// zero_to_fp32.py's output has no manifest: nothing is checked, and the report says so.
TEST(Incomplete, WeightsWithoutAManifestAreNotChecked) {
  const VerifyReport report = Verify(fs::path(FixtureCase("s2_fp32_dp2")) / "fp32");
  EXPECT_EQ(report.kind, "export");
  EXPECT_TRUE(report.ok()) << ReportToText(report);
  EXPECT_TRUE(HasSkipped(report, "manifest", "", "weights files are not checked"))
      << ReportToText(report);
}

TEST(Incomplete, NoCrcIsANoteNotASkip) {
  VerifyOptions options;
  options.check_crc = false;
  absl::StatusOr<VerifyReport> report =
      VerifyCheckpoint((fs::path(FixtureCase("s2_fp32_dp2")) / "checkpoint").string(), options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok() && report->complete()) << ReportToText(*report);
  EXPECT_EQ(report->notes,
            std::vector<std::string>{"the records' CRC-32s were not read (--no-crc)"});
}

// What `ucp reshard` writes: a save folder (latest + tag folder) with ucp_manifest.json at its
// root.
TEST(ReshardOutput, IsCheckedAsZeroAndAgainstItsManifest) {
  ScratchDir scratch;
  const fs::path out = scratch.path() / "resharded";
  fs::create_directories(out);
  fs::copy(fs::path(FixtureCase("s2_fp32_dp4")) / "reshard_dp2/checkpoint/global_step5",
           out / "global_step5", fs::copy_options::recursive);
  std::ofstream(out / "latest") << "global_step5";
  ucp::Manifest manifest;
  absl::StatusOr<std::vector<std::string>> files = ucp::ListFiles(out.string());
  ASSERT_TRUE(files.ok()) << files.status();
  for (const std::string& file : *files) {
    absl::StatusOr<ucp::ManifestEntry> entry = ucp::HashFile(out.string(), file);
    ASSERT_TRUE(entry.ok()) << entry.status();
    manifest.files.push_back(*entry);
  }
  std::ofstream(out / "ucp_manifest.json") << ucp::ManifestToJson(manifest);
  VerifyReport report = Verify(out);
  EXPECT_TRUE(report.ok()) << ReportToText(report);
  EXPECT_EQ(report.kind, "zero");
  EXPECT_GT(report.files_checked, 2);
  EXPECT_GT(report.params_checked, 10);

  const fs::path shard = out / "global_step5" / kShard1;
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(shard) / 2));
    f.put('\x5a');
  }
  report = Verify(out);
  EXPECT_TRUE(HasProblem(report, "manifest", std::string("global_step5/") + kShard1, "CRC-32"))
      << ReportToText(report);
}

TEST(Manifest, EveryDifferenceNamed) {
  ScratchDir scratch;
  const fs::path dir = scratch.path() / "export";
  fs::create_directories(dir);
  std::ofstream(dir / "a.bin") << "hello";
  std::ofstream(dir / "b.bin") << "world";
  std::ofstream(dir / "ucp_manifest.json")
      << R"({"format": "ucp-manifest", "version": 1, "generator": "test", "files": [)"
      << R"({"path": "a.bin", "size": 5, "crc32": "3610a686"}, {"path": "b.bin", "size": 4, "crc32": "00000000"},)"
      << R"({"path": "c.bin", "size": 1, "crc32": "00000000"}]})";
  std::ofstream(dir / "d.bin") << "extra";
  const VerifyReport report = Verify(dir);
  EXPECT_EQ(report.kind, "export");
  EXPECT_EQ(report.files_checked, 3);  // the manifest's entries
  EXPECT_FALSE(HasProblem(report, "manifest", "a.bin")) << ReportToText(report);
  EXPECT_TRUE(HasProblem(report, "manifest", "b.bin", "size 5 bytes")) << ReportToText(report);
  EXPECT_TRUE(HasProblem(report, "manifest", "c.bin", "missing")) << ReportToText(report);
  EXPECT_TRUE(HasProblem(report, "manifest", "d.bin", "not listed")) << ReportToText(report);
  EXPECT_EQ(ReportToJson(report)["problems"].size(), 3u);
}

}  // namespace
}  // namespace ucp::converters::verify
