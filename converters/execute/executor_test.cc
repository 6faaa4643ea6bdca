#include "converters/execute/executor.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "formats/base/crc32.h"
#include "formats/base/scratch_dir_testutil.h"
#include "formats/torch/torch_writer.h"
#include "gtest/gtest.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::execute {
namespace {

namespace fs = std::filesystem;
using plan::CopyOp;
using plan::Plan;
using plan::PlanFile;
using plan::Region;

class ExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testutil::ScratchDir::Make("");
    fs::create_directories(dir_ / "zero" / "w");
    // Two "shards" of 1000 bytes each, bytes b -> (b * 7 + shard) mod 251.
    for (int s = 0; s < 2; ++s) {
      std::string bytes(1000, '\0');
      for (size_t b = 0; b < bytes.size(); ++b) bytes[b] = static_cast<char>((b * 7 + s) % 251);
      shards_.push_back(bytes);
      sources_.push_back(MemorySource(Buffer::CopyOf(bytes), absl::StrCat("shard", s, ".pt")));
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Read(const std::string& rel) {
    std::ifstream in(dir_ / rel, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  // zero/w/fp32.pt: a [100] f32 tensor made of shard0[100, 300) ‖ shard1[0, 200); plus a copy of
  // shard 1. Returns the plan and the expected file bytes.
  Plan MakePlan(std::string* expected_param) {
    Plan p;
    p.sources = {{"shard0.pt", 1000}, {"shard1.pt", 1000}};
    ucp::ParamStateSpec spec;
    spec.shape = Shape({100});
    spec.storage_numel = 100;
    formats::torch::ValueArena arena;
    absl::StatusOr<ucp::ParamStateTree> tree = ucp::BuildParamStateTree(arena, spec);
    EXPECT_TRUE(tree.ok());
    absl::StatusOr<ucp::TorchFrame> frame = ucp::FrameTorchFile("fp32", *tree->root, nullptr);
    EXPECT_TRUE(frame.ok());
    const uint64_t at = frame->storages[0].payload_offset;
    PlanFile f;
    f.path = "zero/w/fp32.pt";
    f.size = frame->file_size;
    f.frame = *frame;
    f.regions.push_back(Region{at, 400, {CopyOp{0, 100, 200, at}, CopyOp{1, 0, 200, at + 200}}});
    p.files.push_back(f);
    PlanFile copy;
    copy.path = "copy.pt";
    copy.role = plan::FileRole::kModelCopy;
    copy.size = 1000;
    copy.regions.push_back(Region{0, 1000, {CopyOp{1, 0, 1000, 0}}});
    p.files.push_back(copy);

    formats::torch::StorageRef* storage = const_cast<formats::torch::StorageRef*>(tree->storage);
    storage->bytes = Buffer::CopyOf(shards_[0].substr(100, 200) + shards_[1].substr(0, 200));
    MemorySink sink;
    EXPECT_TRUE(formats::torch::WriteTorchFile(sink, *tree->root, {"fp32"}).ok());
    *expected_param =
        std::string(reinterpret_cast<const char*>(sink.bytes().data()), sink.bytes().size());
    return p;
  }

  std::vector<const ByteSource*> Sources() const { return {sources_[0].get(), sources_[1].get()}; }

  fs::path dir_;
  std::vector<std::string> shards_;
  std::vector<std::shared_ptr<ByteSource>> sources_;
};

TEST_F(ExecutorTest, WritesTorchWriterBytesUnderATinyMemoryBudget) {
  std::string expected;
  Plan plan = MakePlan(&expected);
  for (uint64_t limit : {uint64_t{100}, uint64_t{7}, kDefaultMemoryLimit}) {
    int reports = 0;
    ExecuteProgress last;
    ExecuteOptions options{.threads = 3, .memory_limit = limit, .fsync = false};
    options.progress = [&](const ExecuteProgress& p) {
      ++reports;
      EXPECT_LE(p.bytes_done, p.bytes_total);
      last = p;
    };
    absl::StatusOr<ExecuteResult> r = ExecutePlan(plan, Sources(), dir_.string(), options);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(Read("zero/w/fp32.pt"), expected) << limit;
    EXPECT_EQ(Read("copy.pt"), shards_[1]);
    EXPECT_LE(r->stats.peak_buffer_bytes, limit);
    EXPECT_EQ(r->stats.bytes_copied, 1400u);
    EXPECT_GE(reports, 1);
    ASSERT_EQ(r->files.size(), 2u);
    EXPECT_EQ(r->files[0],
              (ucp::ManifestEntry{"zero/w/fp32.pt", expected.size(), Crc32(expected)}));
    EXPECT_EQ(r->files[1].crc32, Crc32(shards_[1]));
    // The last report counts every byte of every file: what the verbs' final line says.
    EXPECT_EQ(last.bytes_done, expected.size() + 1000);
    EXPECT_EQ(last.bytes_total, expected.size() + 1000);
    EXPECT_EQ(last.files_done, 2u);
  }
}

TEST_F(ExecutorTest, CancelStopsTheWorkersWithCancelled) {
  std::string expected;
  Plan plan = MakePlan(&expected);
  std::atomic<bool> cancel{true};
  ExecuteOptions options{.threads = 2, .memory_limit = 7, .fsync = false};
  options.cancel = &cancel;
  EXPECT_EQ(ExecutePlan(plan, Sources(), dir_.string(), options).status().code(),
            absl::StatusCode::kCancelled);
  // Set mid-way (from the progress callback): the chunks after it do not run.
  cancel = false;
  options.threads = 1;
  uint64_t copied = 0;
  options.progress = [&](const ExecuteProgress& p) {
    copied = p.bytes_done;
    cancel = true;
  };
  absl::StatusOr<ExecuteResult> r = ExecutePlan(plan, Sources(), dir_.string(), options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
  EXPECT_LT(copied, 1400u);
}

// A file a format library writes: called with the resolved sources, reported through advance,
// fsynced, in the manifest with its real size (the plan's size is only an estimate).
TEST_F(ExecutorTest, WriterFilesAreWrittenAndListed) {
  Plan plan;
  plan.sources = {{"shard0.pt", 1000}, {"shard1.pt", 1000}};
  PlanFile f;
  f.path = "zero/w/lib.bin";
  f.role = plan::FileRole::kWeights;
  f.size = 1500;  // estimate; the writer writes 1100 bytes
  f.writer = [](const plan::WriterContext& c) -> absl::Status {
    std::string bytes(1100, '\0');
    absl::Status s =
        c.sources[1]->ReadAt(0, absl::MakeSpan(reinterpret_cast<std::byte*>(bytes.data()), 1000));
    if (!s.ok()) return s;
    std::ofstream(c.path, std::ios::binary) << bytes;
    return c.advance(1100) ? absl::OkStatus() : absl::CancelledError("interrupted");
  };
  plan.files.push_back(f);
  ExecuteProgress last;
  ExecuteOptions options{.threads = 2, .fsync = true};
  options.progress = [&](const ExecuteProgress& p) { last = p; };
  absl::StatusOr<ExecuteResult> r = ExecutePlan(plan, Sources(), dir_.string(), options);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string want = shards_[1] + std::string(100, '\0');
  EXPECT_EQ(Read("zero/w/lib.bin"), want);
  ASSERT_EQ(r->files.size(), 1u);
  EXPECT_EQ(r->files[0], (ucp::ManifestEntry{"zero/w/lib.bin", 1100, Crc32(want)}));
  EXPECT_EQ(last.bytes_done, 1100u);
  EXPECT_EQ(last.bytes_total, 1100u);
  plan.files[0].regions.push_back(Region{0, 1, {CopyOp{0, 0, 1, 0}}});
  EXPECT_EQ(ExecutePlan(plan, Sources(), dir_.string()).status().code(),
            absl::StatusCode::kInternal);
}

// UCP_TEST_PAUSE_AFTER_OPS: the run stops after N chunks, says so through a file, and waits for
// the cancellation (what the CLI's signal tests and the kill test rely on).
TEST_F(ExecutorTest, TestHookPausesMidWriteUntilCancelled) {
  std::string expected;
  Plan plan = MakePlan(&expected);
  const std::string ready = (dir_ / "paused").string();
  ::setenv("UCP_TEST_PAUSE_AFTER_OPS", "3", 1);
  ::setenv("UCP_TEST_PAUSE_READY", ready.c_str(), 1);
  std::atomic<bool> cancel{false}, finished{false};
  // One thread (128 bytes of buffers), chunks of 128 bytes: the first 3 all belong to the first
  // file, so the second (copy.pt) is not even created while paused.
  ExecuteOptions options{.threads = 2, .memory_limit = 128, .fsync = false};
  options.cancel = &cancel;
  std::thread run([&] {
    absl::StatusOr<ExecuteResult> r = ExecutePlan(plan, Sources(), dir_.string(), options);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
    finished = true;
  });
  while (!fs::exists(ready)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(finished);
  EXPECT_FALSE(fs::exists(dir_ / "copy.pt"));
  cancel = true;
  run.join();
  ::unsetenv("UCP_TEST_PAUSE_AFTER_OPS");
  ::unsetenv("UCP_TEST_PAUSE_READY");
}

TEST_F(ExecutorTest, ShortSourceIsDataLossNamingIt) {
  std::string expected;
  Plan plan = MakePlan(&expected);
  std::shared_ptr<ByteSource> short_shard =
      MemorySource(Buffer::CopyOf(shards_[1].substr(0, 900)), "shard1.pt");
  std::vector<const ByteSource*> sources = {sources_[0].get(), short_shard.get()};
  absl::StatusOr<ExecuteResult> r =
      ExecutePlan(plan, sources, dir_.string(), {.threads = 2, .fsync = false});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_NE(r.status().message().find("shard1.pt"), std::string::npos) << r.status();
}

size_t OpenDescriptors() {
  return static_cast<size_t>(
      std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator()));
}

// With fsync, written files stay open until one parallel fsync at the end, up to half the soft
// RLIMIT_NOFILE; beyond that they are fsynced when written. Either way every file is complete and
// every descriptor is closed when ExecutePlan returns.
TEST_F(ExecutorTest, FsyncsManyFilesAndClosesThem) {
  Plan plan;
  plan.sources = {{"shard0.pt", 1000}, {"shard1.pt", 1000}};
  constexpr int kFiles = 120;
  for (int i = 0; i < kFiles; ++i) {
    PlanFile f;
    f.path = absl::StrCat("copy", i, ".pt");
    f.role = plan::FileRole::kModelCopy;
    f.size = 10 + i;
    f.regions.push_back(Region{0, f.size, {CopyOp{i % 2, static_cast<uint64_t>(i), f.size, 0}}});
    plan.files.push_back(f);
  }
  struct rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  for (rlim_t soft : {saved.rlim_cur, std::min<rlim_t>(saved.rlim_cur, 256 + 2 * 40)}) {
    struct rlimit lowered = saved;
    lowered.rlim_cur = soft;  // 256 + 80: 104 may stay open, the other 16 are fsynced at once
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &lowered), 0);
    const size_t open_before = OpenDescriptors();
    absl::StatusOr<ExecuteResult> r =
        ExecutePlan(plan, Sources(), dir_.string(), {.threads = 2, .fsync = true});
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(OpenDescriptors(), open_before) << soft;
    ASSERT_EQ(r->files.size(), static_cast<size_t>(kFiles));
    for (int i = 0; i < kFiles; ++i) {
      const std::string want = shards_[i % 2].substr(i, 10 + i);
      EXPECT_EQ(Read(absl::StrCat("copy", i, ".pt")), want) << i;
      EXPECT_EQ(r->files[i].crc32, Crc32(want)) << i;
    }
  }
}

TEST_F(ExecutorTest, RejectsBadRequests) {
  std::string expected;
  Plan plan = MakePlan(&expected);
  EXPECT_EQ(ExecutePlan(plan, Sources(), dir_.string(), {.memory_limit = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ExecutePlan(plan, {sources_[0].get()}, dir_.string()).status().code(),
            absl::StatusCode::kInvalidArgument);
  plan.files[1].regions[0].ops[0].length = 999;  // leaves a hole
  EXPECT_EQ(ExecutePlan(plan, Sources(), dir_.string()).status().code(),
            absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace ucp::converters::execute
