// The resume journal of one rank of a distributed run (docs/distributed.md, "Failures and
// resume"): `<staging>/.ucp-dist/rank-<r>.journal`, one line per finished batch (written after
// the batch's bytes are fsynced) and per written file. A rerun skips what the journal lists, and
// rank 0 puts the journal's CRCs into zip headers and the manifest without reading the bytes
// back, so a journal line is believed only when it is provably this rank's, of this share:
//
//     ucp-dist-journal 2 plan <PlanKey hex> work <WorkKey hex> rank <r> world <w> #<crc>
//     batch <index> <crc> <crc> ... #<crc>
//     file <index> <size> <crc> #<crc>
//
// where the last word is the CRC-32 of the line before " #", in 8 hex digits. The journal is
// read as untrusted bytes (dist_journal_test.cc, tests/mutation/dist_mutation_test.cc,
// dist_journal_fuzz.cc):
//   * no journal, or no whole first line: a fresh start;
//   * a header of another plan, share, rank or world size (a rerun with another
//     UCP_DIST_MIN_PIECE, a journal copied from elsewhere): discarded, the share is redone;
//   * a last line without its newline (the run died while appending): dropped, and cut off the
//     file before the next append;
//   * any other whole line that is damaged (checksum, syntax, an index or count that does not fit
//     the share, a batch listed twice with other CRCs): DataLoss naming the file and line. Nothing
//     wrote it but ucp; a journal damaged in the middle means the staging folder cannot be
//     trusted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "converters/execute/dist_share.h"
#include "converters/plan/plan.h"
#include "ucp/manifest.h"

namespace ucp::converters::execute {

struct JournalHeader {
  uint64_t plan_key = 0;  // PlanKey(plan, world)
  uint64_t work_key = 0;  // WorkKey(the rank's work)
  int rank = 0;
  int world = 1;
};

struct Journal {
  std::vector<std::vector<uint32_t>> batch_crcs;           // by batch; empty: not done
  std::vector<std::optional<ucp::ManifestEntry>> written;  // by RankWork::written_files index
  // Whether the file must be started anew (with the header): no journal, no whole header line,
  // or one that was discarded (`discarded` says why).
  bool fresh = true;
  std::string discarded;
  // Bytes up to the end of the last whole line: appends go after a cut to this length.
  uint64_t whole_bytes = 0;
};

std::string JournalPath(const std::string& staging, int rank);

// The lines, checksummed, without the newline.
std::string JournalHeaderLine(const JournalHeader& header);
std::string JournalBatchLine(size_t batch, absl::Span<const uint32_t> crcs);
std::string JournalFileLine(size_t index, uint64_t size, uint32_t crc);

// The journal `text` read from `path` (named in errors), for the rank whose header and work are
// given. Errors: DataLoss (see above).
absl::StatusOr<Journal> ParseJournal(absl::string_view text, const JournalHeader& header,
                                     const plan::Plan& plan, const RankWork& work,
                                     absl::string_view path);

// The most bytes a journal of `work` holds; a longer file is refused before it is read.
uint64_t MaxJournalBytes(const RankWork& work);

// Reads (ParseJournal) the journal at `path`, then leaves the file ready for appends: started
// anew with the header when fresh, else cut to its whole lines. Errors: ParseJournal's, DataLoss
// for a file above MaxJournalBytes, the file system's.
absl::StatusOr<Journal> OpenJournal(const std::string& path, const JournalHeader& header,
                                    const plan::Plan& plan, const RankWork& work, bool fsync);

// Appends `line` and a newline in one write, then fsyncs when asked.
absl::Status AppendJournal(const std::string& path, const std::string& line, bool fsync);

}  // namespace ucp::converters::execute
