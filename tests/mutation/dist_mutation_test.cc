// Mutation test of the distributed run's untrusted inputs (converters/execute/dist_wire.h and
// dist_journal.h): 40,000 deterministic damages (mutator.h) of a real frame stream (hello,
// heartbeat, report, failure) and 40,000 of a real journal. Only statuses are allowed (DataLoss or
// InvalidArgument naming the peer or the file), and nothing damaged is believed: an accepted
// journal lists only the CRCs that were written, an accepted report has the share's shape.
// Replay one mutant: UCP_MUTANT=17 ctest -R DistMutation...
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "converters/execute/dist_journal.h"
#include "converters/execute/dist_share.h"
#include "converters/execute/dist_wire.h"
#include "gtest/gtest.h"
#include "tests/mutation/mutator.h"

namespace ucp::testing {
namespace {

using converters::execute::DecodeHello;
using converters::execute::DecodeReport;
using converters::execute::EncodeFrame;
using converters::execute::EncodeHello;
using converters::execute::EncodeReport;
using converters::execute::FailureText;
using converters::execute::Frame;
using converters::execute::FrameReader;
using converters::execute::Journal;
using converters::execute::JournalBatchLine;
using converters::execute::JournalFileLine;
using converters::execute::JournalHeader;
using converters::execute::JournalHeaderLine;
using converters::execute::MessageType;
using converters::execute::ParseJournal;
using converters::execute::RankReport;
using converters::execute::RankWork;
using converters::execute::Segment;

constexpr int64_t kMutants = 40000;

// A share of three batches (2, 1 and 3 segments) and one written file.
RankWork Work() {
  RankWork work;
  work.batches = {{Segment{0, 0, 0, 8}, Segment{0, 1, 8, 8}},
                  {Segment{0, 2, 16, 8}},
                  {Segment{0, 3, 24, 8}, Segment{0, 4, 32, 8}, Segment{0, 5, 40, 8}}};
  work.written_files = {1};
  return work;
}

// [first, first + count), or only UCP_MUTANT when set.
std::pair<int64_t, int64_t> Range() {
  int64_t only = 0;
  const char* env = std::getenv("UCP_MUTANT");
  if (env != nullptr && absl::SimpleAtoi(env, &only)) return {only, 1};
  return {0, kMutants};
}

TEST(DistMutation, FrameStreamsGiveOnlyStatusesNamingThePeer) {
  const RankWork work = Work();
  const RankReport report{{1, 2, 3, 4, 5, 6}, {{"", 4096, 77}}};
  MutationSeed seed{"frames",
                    EncodeHello(1, 2, 0xabcdef) + EncodeFrame(MessageType::kHeartbeat, "") +
                        EncodeFrame(MessageType::kData, EncodeReport(report)) +
                        EncodeFrame(MessageType::kFailed, "rank 1: disk full"),
                    {}};
  const Mutator mutator({seed}, 0xD157);
  int64_t frames = 0, errors = 0;
  const auto [first, count] = Range();
  for (int64_t i = first; i < first + count; ++i) {
    const Mutant mutant = mutator.Make(i);
    SCOPED_TRACE(mutant.description);
    FrameReader reader("rank 1", uint64_t{1} << 20);
    const size_t step = 1 + static_cast<size_t>(i % 23);
    bool failed = false;
    for (size_t at = 0; at < mutant.bytes.size() && !failed; at += step) {
      reader.Append(absl::string_view(mutant.bytes).substr(at, step));
      for (;;) {
        absl::StatusOr<std::optional<Frame>> next = reader.Next();
        if (!next.ok()) {
          ASSERT_EQ(next.status().code(), absl::StatusCode::kDataLoss) << next.status();
          ASSERT_TRUE(absl::StartsWith(next.status().message(), "rank 1 ")) << next.status();
          failed = true;
          ++errors;
          break;
        }
        if (!*next) break;
        ++frames;
        const Frame& frame = **next;
        if (frame.type == MessageType::kHello) {
          absl::StatusOr<converters::execute::Hello> hello = DecodeHello(frame.payload, "rank 1");
          if (!hello.ok()) {
            ASSERT_TRUE(absl::IsDataLoss(hello.status()) ||
                        absl::IsInvalidArgument(hello.status()));
            ASSERT_TRUE(absl::StartsWith(hello.status().message(), "rank 1 "));
          }
        } else if (frame.type == MessageType::kData) {
          absl::StatusOr<RankReport> got = DecodeReport(frame.payload, work, 1);
          if (got.ok()) {
            ASSERT_EQ(got->crcs.size(), 6u);
            ASSERT_EQ(got->written.size(), 1u);
          } else {
            ASSERT_TRUE(absl::IsDataLoss(got.status()));
            ASSERT_TRUE(absl::StartsWith(got.status().message(), "rank 1 reported "));
          }
        } else if (frame.type == MessageType::kFailed) {
          const std::string text = FailureText(frame.payload, 1);
          ASSERT_TRUE(absl::StartsWith(text, "rank 1"));
          for (char c : text) ASSERT_TRUE(c >= 0x20 && c < 0x7f) << text;
        }
      }
    }
  }
  // The mutants exercise both sides: frames accepted and streams refused.
  if (count == kMutants) {
    EXPECT_GT(frames, kMutants);
    EXPECT_GT(errors, kMutants / 10);
  }
}

TEST(DistMutation, DamagedJournalsAreNeverBelieved) {
  converters::plan::Plan plan;
  plan.files.resize(2);
  plan.files[1].path = "weights.h5";
  const RankWork work = Work();
  const JournalHeader header{0x1234, converters::execute::WorkKey(work), 1, 3};
  const std::vector<std::vector<uint32_t>> written_crcs = {
      {4294967295u, 0}, {}, {123456789, 42, 7}};
  const std::string text = JournalHeaderLine(header) + "\n" + JournalBatchLine(0, written_crcs[0]) +
                           "\n" + JournalBatchLine(2, written_crcs[2]) + "\n" +
                           JournalFileLine(0, 65536, 3141592653u) + "\n";
  const Mutator mutator({{"journal", text, {}}}, 0x10A1);
  int64_t accepted = 0, refused = 0, discarded = 0;
  const auto [first, count] = Range();
  for (int64_t i = first; i < first + count; ++i) {
    const Mutant mutant = mutator.Make(i);
    SCOPED_TRACE(mutant.description);
    absl::StatusOr<Journal> j = ParseJournal(mutant.bytes, header, plan, work, "rank-1.journal");
    if (!j.ok()) {
      ASSERT_EQ(j.status().code(), absl::StatusCode::kDataLoss) << j.status();
      ASSERT_TRUE(absl::StartsWith(j.status().message(), "rank-1.journal line ")) << j.status();
      ++refused;
      continue;
    }
    if (!j->discarded.empty()) ++discarded;
    ++accepted;
    ASSERT_LE(j->whole_bytes, mutant.bytes.size());
    for (size_t b = 0; b < 3; ++b) {
      // A batch is believed only with exactly the CRCs that were journalled for it.
      if (!j->batch_crcs[b].empty()) {
        ASSERT_EQ(j->batch_crcs[b], written_crcs[b]) << b;
      }
    }
    if (j->written[0]) {
      ASSERT_EQ(j->written[0]->size, 65536u);
      ASSERT_EQ(j->written[0]->crc32, 3141592653u);
    }
  }
  if (count == kMutants) {
    EXPECT_GT(accepted, kMutants / 10);
    EXPECT_GT(refused, kMutants / 10);
    EXPECT_GT(discarded, kMutants / 100);
  }
}

}  // namespace
}  // namespace ucp::testing
