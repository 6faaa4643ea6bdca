// libFuzzer target for the resume journal's reader (dist_journal.h): the input is a journal file
// of a share of three batches (2, 1 and 3 segments) and one written file. Any input must end in a
// Status naming the file; an accepted journal must fit the share (a CRC per segment) and end its
// whole lines where the input's last newline is.
#include <cstddef>
#include <cstdint>

#include "absl/strings/match.h"
#include "converters/execute/dist_journal.h"
#include "formats/base/status.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ucp::converters::execute;  // NOLINT: a fuzz driver
  static const auto* fixture = [] {
    auto* f = new std::pair<ucp::converters::plan::Plan, RankWork>();
    f->first.files.resize(2);
    f->first.files[1].path = "weights.h5";
    f->second.batches = {{Segment{}, Segment{}}, {Segment{}}, {Segment{}, Segment{}, Segment{}}};
    f->second.written_files = {1};
    return f;
  }();
  const JournalHeader header{1, 2, 0, 2};
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Journal> journal =
      ParseJournal(text, header, fixture->first, fixture->second, "j");
  if (!journal.ok()) {
    UCP_CHECK(absl::IsDataLoss(journal.status()));
    UCP_CHECK(absl::StartsWith(journal.status().message(), "j line "));
    return 0;
  }
  UCP_CHECK(journal->whole_bytes <= size);
  UCP_CHECK(journal->fresh || journal->whole_bytes == text.rfind('\n') + 1);
  UCP_CHECK(journal->batch_crcs.size() == 3 && journal->written.size() == 1);
  for (size_t b = 0; b < 3; ++b) {
    const size_t n = journal->batch_crcs[b].size();
    UCP_CHECK(n == 0 || n == fixture->second.batches[b].size());
  }
  if (journal->written[0]) {
    UCP_CHECK(journal->written[0]->path == "weights.h5");
  }
  return 0;
}
