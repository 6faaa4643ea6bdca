#include "converters/execute/run_plan.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "formats/base/scratch_dir_testutil.h"
#include "gtest/gtest.h"
#include "ucp/manifest.h"
#include "ucp/staging_dir.h"

namespace ucp::converters::execute {
namespace {

namespace fs = std::filesystem;

class RunPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    fs::create_directories(dir_ / "ckpt" / "global_step5");
    input_ = (dir_ / "ckpt" / "global_step5" / "shard.pt").string();
    std::ofstream(input_, std::ios::binary) << std::string(100, 'x');
    source_ = MemorySource(Buffer::CopyOf(std::string(100, 'x')), input_);
    // One file copied from the input file, one written from computed bytes.
    plan_.sources = {{input_, 100},
                     {"<computed>", 3, MemorySource(Buffer::CopyOf(std::string("abc")), "<c>")}};
    plan::PlanFile copy;
    copy.path = "sub/copy.pt";
    copy.role = plan::FileRole::kModelCopy;
    copy.size = 100;
    copy.regions.push_back(plan::Region{0, 100, {plan::CopyOp{0, 0, 100, 0}}});
    plan::PlanFile computed = copy;
    computed.path = "computed";
    computed.size = 3;
    computed.regions = {plan::Region{0, 3, {plan::CopyOp{1, 0, 3, 0}}}};
    plan_.files = {copy, computed};
  }
  RunOptions Options(const std::string& out) const {
    RunOptions o;
    o.output = out;
    o.inputs = {(dir_ / "ckpt" / "global_step5").string()};
    o.save_folders = {(dir_ / "ckpt").string()};
    o.execute.fsync = false;
    return o;
  }
  std::vector<const ByteSource*> Files() const { return {source_.get()}; }

  testutil::ScratchDir scratch_;
  fs::path dir_;
  std::string input_;
  std::shared_ptr<ByteSource> source_;
  plan::Plan plan_;
};

TEST_F(RunPlanTest, WritesTheFilesAndTheManifestAtomically) {
  const std::string out = (dir_ / "ckpt" / "out").string();
  absl::StatusOr<RunResult> r = RunPlan(plan_, Files(), Options(out + "/"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->output, out);
  EXPECT_EQ(r->bytes, 103u);
  EXPECT_EQ(r->files.size(), 2u);
  EXPECT_EQ(r->staging, ucp::StagingPathFor(out));
  EXPECT_FALSE(fs::exists(r->staging));
  EXPECT_TRUE(ucp::VerifyDirectory(out).ok());
  // Again: exists; forced: ucp's own output is replaced.
  EXPECT_EQ(RunPlan(plan_, Files(), Options(out)).status().code(),
            absl::StatusCode::kAlreadyExists);
  RunOptions forced = Options(out);
  forced.force = true;
  EXPECT_TRUE(RunPlan(plan_, Files(), forced).ok());
}

TEST_F(RunPlanTest, RefusesOutputsOverlappingTheInputBeforeWriting) {
  const std::string tag = (dir_ / "ckpt" / "global_step5").string();
  for (const std::string& out :
       {tag, (dir_ / "ckpt").string(), dir_.string(), tag + "/x", input_}) {
    RunOptions o = Options(out);
    o.force = true;
    absl::Status s = RunPlan(plan_, Files(), o).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << out << ": " << s;
    EXPECT_EQ(CheckOverlap(plan_, o).code(), absl::StatusCode::kInvalidArgument) << out;
  }
  // The plan's source files are inputs even when the caller names no folder.
  RunOptions bare;
  bare.output = input_;
  EXPECT_EQ(CheckOverlap(plan_, bare).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fs::file_size(input_), 100u);
  EXPECT_FALSE(fs::exists(tag + "/x"));
}

TEST_F(RunPlanTest, CancelledRunLeavesNothing) {
  const std::string out = (dir_ / "out").string();
  std::atomic<bool> cancel{true};
  RunOptions o = Options(out);
  o.execute.cancel = &cancel;
  absl::Status s = RunPlan(plan_, Files(), o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_EQ(s.message(), "interrupted; nothing was written at " + out);
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(ucp::StagingPathFor(out)));
}

TEST_F(RunPlanTest, ASourceWithoutBytesIsInternal) {
  EXPECT_EQ(RunPlan(plan_, {}, Options((dir_ / "out").string())).status().code(),
            absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace ucp::converters::execute
