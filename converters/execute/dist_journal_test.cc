// The resume journal (dist_journal.h) as a crash, another run or damage leaves it: torn at every
// byte, of another plan, share, rank or world, damaged in the middle, listing things twice.
#include "converters/execute/dist_journal.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "formats/base/crc32.h"
#include "formats/base/scratch_dir_testutil.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::converters::execute {
namespace {

using ::testing::HasSubstr;

constexpr char kPath[] = "/staging/.ucp-dist/rank-1.journal";

// A share of three batches (2, 1 and 3 segments) and one written file (plan file 1).
struct Fixture {
  Fixture() {
    plan.files.resize(2);
    plan.files[0].path = "zero/a.pt";
    plan.files[1].path = "weights.h5";
    work.batches = {{Segment{0, 0, 0, 8}, Segment{0, 1, 8, 8}},
                    {Segment{0, 2, 16, 8}},
                    {Segment{0, 3, 24, 8}, Segment{0, 4, 32, 8}, Segment{0, 5, 40, 8}}};
    work.written_files = {1};
    header = {0x0123456789abcdef, WorkKey(work), 1, 4};
  }
  // The journal of a run that finished batches 0 and 2 and the written file.
  std::string Text() const {
    return JournalHeaderLine(header) + "\n" + JournalBatchLine(0, {11, 4294967295u}) + "\n" +
           JournalBatchLine(2, {0, 1, 2}) + "\n" + JournalFileLine(0, 1234, 99) + "\n";
  }
  absl::StatusOr<Journal> Parse(const std::string& text) const {
    return ParseJournal(text, header, plan, work, kPath);
  }
  plan::Plan plan;
  RankWork work;
  JournalHeader header;
};

// A line with a valid checksum around any text (what only a forger or a bug writes).
std::string Forged(const std::string& text) {
  return absl::StrCat(text, " #", absl::StrFormat("%08x", Crc32(text)));
}

TEST(Journal, RoundTrip) {
  const Fixture f;
  absl::StatusOr<Journal> j = f.Parse(f.Text());
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_FALSE(j->fresh);
  EXPECT_EQ(j->whole_bytes, f.Text().size());
  ASSERT_EQ(j->batch_crcs.size(), 3u);
  EXPECT_EQ(j->batch_crcs[0], (std::vector<uint32_t>{11, 4294967295u}));
  EXPECT_TRUE(j->batch_crcs[1].empty());
  EXPECT_EQ(j->batch_crcs[2], (std::vector<uint32_t>{0, 1, 2}));
  ASSERT_EQ(j->written.size(), 1u);
  ASSERT_TRUE(j->written[0].has_value());
  EXPECT_EQ(*j->written[0], (ucp::ManifestEntry{"weights.h5", 1234, 99}));
}

TEST(Journal, NothingOrATornHeaderIsAFreshStart) {
  const Fixture f;
  const std::string header = JournalHeaderLine(f.header);
  for (const std::string& text : {std::string(), header.substr(0, 10), header}) {
    absl::StatusOr<Journal> j = f.Parse(text);
    ASSERT_TRUE(j.ok()) << j.status();
    EXPECT_TRUE(j->fresh);
    EXPECT_EQ(j->whole_bytes, 0u);
    EXPECT_TRUE(j->discarded.empty());
  }
}

// Cut at every byte (a run killed while appending): never an error, never a value that was not
// written, and the whole lines before the cut are kept.
TEST(Journal, TornAtEveryByteKeepsOnlyWholeLines) {
  const Fixture f;
  const std::string text = f.Text();
  const absl::StatusOr<Journal> full = f.Parse(text);
  ASSERT_TRUE(full.ok());
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    const std::string torn = text.substr(0, cut);
    absl::StatusOr<Journal> j = f.Parse(torn);
    ASSERT_TRUE(j.ok()) << "cut " << cut << ": " << j.status();
    const size_t whole = torn.rfind('\n') == std::string::npos ? 0 : torn.rfind('\n') + 1;
    EXPECT_EQ(j->whole_bytes, whole) << cut;
    size_t lines_kept = 0;
    for (size_t b = 0; b < 3; ++b) {
      if (j->batch_crcs[b].empty()) continue;
      EXPECT_EQ(j->batch_crcs[b], full->batch_crcs[b]) << "cut " << cut;
      ++lines_kept;
    }
    if (j->written[0]) {
      EXPECT_EQ(*j->written[0], *full->written[0]);
      ++lines_kept;
    }
    const size_t whole_lines = static_cast<size_t>(std::count(torn.begin(), torn.end(), '\n'));
    EXPECT_EQ(lines_kept, whole_lines == 0 ? 0 : whole_lines - 1) << "cut " << cut;
  }
}

// The bug the old reader had: "batch 0 11 4294967295" torn to "batch 0 11 42" had the right
// number of words and was believed, CRC 42 and all.
TEST(Journal, ATornCrcIsNotBelieved) {
  const Fixture f;
  const std::string line = JournalBatchLine(0, {11, 4294967295u});
  const std::string torn =
      JournalHeaderLine(f.header) + "\n" + line.substr(0, line.find("4294967295") + 2);
  absl::StatusOr<Journal> j = f.Parse(torn);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_TRUE(j->batch_crcs[0].empty());
  // A later append after the torn tail (without the cut OpenJournal makes) is damage, not data.
  j = f.Parse(torn + JournalBatchLine(1, {5}) + "\n");
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr(absl::StrCat(kPath, " line 2: damaged")));
}

TEST(Journal, AnotherPlanShareRankOrWorldIsDiscarded) {
  const Fixture f;
  std::vector<JournalHeader> others(4, f.header);
  others[0].plan_key ^= 1;
  others[1].work_key ^= 1;  // the same plan divided otherwise (UCP_DIST_MIN_PIECE)
  others[2].rank = 2;
  others[3].world = 5;
  for (const JournalHeader& other : others) {
    Fixture g;
    g.header = other;
    absl::StatusOr<Journal> j = f.Parse(g.Text());
    ASSERT_TRUE(j.ok()) << j.status();
    EXPECT_TRUE(j->fresh);
    EXPECT_THAT(j->discarded, HasSubstr(kPath));
    EXPECT_EQ(j->whole_bytes, 0u);
    for (const auto& crcs : j->batch_crcs) EXPECT_TRUE(crcs.empty());
    EXPECT_FALSE(j->written[0].has_value());
  }
  // A version-1 journal (no header) and garbage are discarded the same way.
  for (const std::string& text : {std::string("batch 0 11 4294967295\n"), std::string("\0\0\n", 3),
                                  std::string("ucp-dist-journal 2 plan\n")}) {
    absl::StatusOr<Journal> j = f.Parse(text);
    ASSERT_TRUE(j.ok());
    EXPECT_TRUE(j->fresh);
    EXPECT_FALSE(j->discarded.empty());
  }
}

TEST(Journal, DamageInTheMiddleIsDataLossNamingFileAndLine) {
  const Fixture f;
  const std::string header = JournalHeaderLine(f.header) + "\n";
  struct Case {
    std::string line, expected;
  };
  std::string flipped = JournalBatchLine(2, {0, 1, 2});
  flipped[flipped.find(" 1 ") + 1] = '7';
  const std::vector<Case> cases = {
      {flipped, "line 2: damaged (checksum)"},
      {"batch 0 11 4294967295", "line 2: damaged (checksum)"},
      {"", "line 2: damaged (checksum)"},
      {Forged("batch 3 1"), "line 2: batch 3 of a share of 3"},
      {Forged("batch 18446744073709551615 1"), "line 2: batch 18446744073709551615 of a share"},
      {Forged("batch 99999999999999999999999 1"), "line 2: no index"},
      {Forged("batch 1 1 2"), "line 2: batch 1 lists 2 CRCs for 1 segments"},
      {Forged("batch 1"), "line 2: batch 1 lists 0 CRCs for 1 segments"},
      {Forged("batch 1 4294967296"), "line 2: a CRC is not a number"},
      {Forged("batch 1 -1"), "line 2: a CRC is not a number"},
      {Forged("batch 1 +1"), "line 2: a CRC is not a number"},
      {Forged("batch 1  1"), "line 2: batch 1 lists 2 CRCs"},
      {Forged("batch -1 1"), "line 2: no index"},
      {Forged("file 1 1 1"), "line 2: file 1 of a share of 1 written files"},
      {Forged("file 0 1"), "line 2: a file line is not"},
      {Forged("file 0 18446744073709551616 1"), "line 2: a file line is not"},
      {Forged("truncate 0 1"), "line 2: neither a batch nor a file line"},
      {Forged("batch"), "line 2: no index"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Journal> j = f.Parse(header + c.line + "\n");
    ASSERT_FALSE(j.ok()) << c.line;
    EXPECT_EQ(j.status().code(), absl::StatusCode::kDataLoss) << c.line;
    EXPECT_THAT(j.status().message(), HasSubstr(absl::StrCat(kPath, " ", c.expected))) << c.line;
  }
}

TEST(Journal, ListedTwiceIsFineOnlyWithTheSameValues) {
  const Fixture f;
  const std::string header = JournalHeaderLine(f.header) + "\n";
  const std::string batch = JournalBatchLine(1, {5}) + "\n";
  absl::StatusOr<Journal> j = f.Parse(header + batch + batch);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(j->batch_crcs[1], std::vector<uint32_t>{5});
  j = f.Parse(header + batch + JournalBatchLine(1, {6}) + "\n");
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr("line 3: batch 1 listed again with other CRCs"));
  j = f.Parse(header + JournalFileLine(0, 1, 2) + "\n" + JournalFileLine(0, 1, 3) + "\n");
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(),
              HasSubstr("line 3: file 0 listed again with another size or CRC"));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(OpenJournal, StartsCutsAndRefuses) {
  const Fixture f;
  ucp::testutil::ScratchDir dir;
  const std::string path = dir.File("rank-1.journal");
  // None: started with the header.
  absl::StatusOr<Journal> j = OpenJournal(path, f.header, f.plan, f.work, false);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_TRUE(j->fresh);
  EXPECT_EQ(ReadFile(path), JournalHeaderLine(f.header) + "\n");
  // A torn tail: cut off, so that the next append starts a line of its own.
  const std::string whole = f.Text();
  std::ofstream(path, std::ios::binary) << whole << "batch 1 12";
  j = OpenJournal(path, f.header, f.plan, f.work, false);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_FALSE(j->fresh);
  EXPECT_EQ(ReadFile(path), whole);
  ASSERT_TRUE(AppendJournal(path, JournalBatchLine(1, {12}), false).ok());
  j = OpenJournal(path, f.header, f.plan, f.work, false);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(j->batch_crcs[1], std::vector<uint32_t>{12});
  // Another plan's: started anew.
  Fixture other;
  other.header.plan_key = 7;
  std::ofstream(path, std::ios::binary) << other.Text();
  j = OpenJournal(path, f.header, f.plan, f.work, false);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_TRUE(j->fresh);
  EXPECT_EQ(ReadFile(path), JournalHeaderLine(f.header) + "\n");
  // Longer than any journal of this share: refused unread.
  std::ofstream(path, std::ios::binary) << std::string(MaxJournalBytes(f.work) + 1, '\n');
  j = OpenJournal(path, f.header, f.plan, f.work, false);
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(j.status().message(), HasSubstr(path + " is "));
  EXPECT_THAT(j.status().message(), HasSubstr("a journal of this rank's share has at most"));
}

TEST(MaxJournalBytes, HoldsTheLongestLines) {
  Fixture f;
  f.work.batches = {std::vector<Segment>(1000)};
  std::string text = JournalHeaderLine({~0ull, ~0ull, 65535, 65536}) + "\n" +
                     JournalBatchLine(0, std::vector<uint32_t>(1000, 4294967295u)) + "\n" +
                     JournalFileLine(~size_t{0}, ~0ull, 4294967295u) + "\n";
  EXPECT_LE(text.size(), MaxJournalBytes(f.work));
}

}  // namespace
}  // namespace ucp::converters::execute
