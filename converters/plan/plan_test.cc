#include "converters/plan/plan.h"

#include "gtest/gtest.h"

namespace ucp::converters::plan {
namespace {

// One source of 100 bytes and a copied file of 10 bytes made of two ops.
Plan Small() {
  Plan p;
  p.sources.push_back({"shard.pt", 100});
  PlanFile f;
  f.path = "zero/w/fp32.pt";
  f.role = FileRole::kModelCopy;
  f.size = 10;
  f.regions.push_back(Region{0, 10, {CopyOp{0, 0, 4, 0}, CopyOp{0, 50, 6, 4}}});
  p.files.push_back(f);
  return p;
}

TEST(PlanTest, ValidPlanAndAccounting) {
  Plan p = Small();
  EXPECT_TRUE(ValidatePlan(p).ok());
  EXPECT_EQ(p.TotalBytes(), 10u);
  EXPECT_EQ(p.CopyBytes(), 10u);
  EXPECT_EQ(p.NumOps(), 2u);
  EXPECT_EQ(p.Directories(), (std::vector<std::string>{"zero", "zero/w"}));
}

TEST(PlanTest, BrokenPlansAreInternalErrors) {
  Plan gap = Small();
  gap.files[0].regions[0].ops[1].dest_offset = 5;
  EXPECT_EQ(ValidatePlan(gap).code(), absl::StatusCode::kInternal);
  Plan short_cover = Small();
  short_cover.files[0].regions[0].ops.pop_back();
  EXPECT_EQ(ValidatePlan(short_cover).code(), absl::StatusCode::kInternal);
  Plan outside = Small();
  outside.files[0].regions[0].ops[1].source_offset = 95;
  EXPECT_EQ(ValidatePlan(outside).code(), absl::StatusCode::kInternal);
  Plan unsafe = Small();
  unsafe.files[0].path = "zero/../../x";
  EXPECT_EQ(ValidatePlan(unsafe).code(), absl::StatusCode::kInternal);
  Plan twice = Small();
  twice.files.push_back(twice.files[0]);
  EXPECT_EQ(ValidatePlan(twice).code(), absl::StatusCode::kInternal);
  Plan bad_source = Small();
  bad_source.files[0].regions[0].ops[0].source = 3;
  EXPECT_EQ(ValidatePlan(bad_source).code(), absl::StatusCode::kInternal);
}

TEST(PlanTest, FramedFilesNeedOneRegionPerStorage) {
  Plan p;
  p.sources.push_back({"shard.pt", 100});
  absl::StatusOr<ucp::TorchFrame> frame = ucp::LayoutTorchFrame("fp32", "\x80\x02N.", {8});
  ASSERT_TRUE(frame.ok());
  PlanFile f;
  f.path = "fp32.pt";
  f.size = frame->file_size;
  f.frame = *frame;
  p.files.push_back(f);
  EXPECT_EQ(ValidatePlan(p).code(), absl::StatusCode::kInternal);  // no region yet
  const uint64_t at = frame->storages[0].payload_offset;
  p.files[0].regions.push_back(Region{at, 8, {CopyOp{0, 10, 8, at}}});
  EXPECT_TRUE(ValidatePlan(p).ok());
  p.files[0].regions[0] = Region{at + 1, 8, {CopyOp{0, 10, 8, at + 1}}};
  EXPECT_EQ(ValidatePlan(p).code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace ucp::converters::plan
