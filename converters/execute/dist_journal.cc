#include "converters/execute/dist_journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "formats/base/crc32.h"
#include "formats/base/status.h"

namespace ucp::converters::execute {
namespace {

constexpr char kMagicWord[] = "ucp-dist-journal";
constexpr int kJournalVersion = 2;

std::string Checksummed(const std::string& text) {
  return absl::StrCat(text, " #", absl::StrFormat("%08x", Crc32(text)));
}

// The text of a whole line whose checksum holds, or nullopt.
std::optional<absl::string_view> Verified(absl::string_view line) {
  const size_t mark = line.rfind(" #");
  if (mark == absl::string_view::npos || line.size() - mark != 10) return std::nullopt;
  const absl::string_view text = line.substr(0, mark);
  const absl::string_view hex = line.substr(mark + 2);
  uint32_t crc = 0;
  for (char c : hex) {
    const bool digit = c >= '0' && c <= '9', letter = c >= 'a' && c <= 'f';
    if (!digit && !letter) return std::nullopt;
    crc = (crc << 4) | static_cast<uint32_t>(digit ? c - '0' : c - 'a' + 10);
  }
  if (crc != Crc32(text)) return std::nullopt;
  return text;
}

// Decimal, digits only (SimpleAtoi would take a sign and spaces).
template <typename T>
bool ParseNumber(absl::string_view word, T* out) {
  if (word.empty() || word.size() > 20) return false;
  for (char c : word) {
    if (c < '0' || c > '9') return false;
  }
  return absl::SimpleAtoi(word, out);
}

}  // namespace

std::string JournalPath(const std::string& staging, int rank) {
  return absl::StrCat(staging, "/.ucp-dist/rank-", rank, ".journal");
}

std::string JournalHeaderLine(const JournalHeader& h) {
  return Checksummed(absl::StrFormat("%s %d plan %016x work %016x rank %d world %d", kMagicWord,
                                     kJournalVersion, h.plan_key, h.work_key, h.rank, h.world));
}

std::string JournalBatchLine(size_t batch, absl::Span<const uint32_t> crcs) {
  std::string text = absl::StrCat("batch ", batch);
  for (uint32_t crc : crcs) absl::StrAppend(&text, " ", crc);
  return Checksummed(text);
}

std::string JournalFileLine(size_t index, uint64_t size, uint32_t crc) {
  return Checksummed(absl::StrCat("file ", index, " ", size, " ", crc));
}

uint64_t MaxJournalBytes(const RankWork& work) {
  uint64_t bytes = 256;  // the header
  for (const auto& batch : work.batches) bytes += 48 + 11 * uint64_t{batch.size()};
  return bytes + 96 * uint64_t{work.written_files.size()};
}

absl::StatusOr<Journal> ParseJournal(absl::string_view text, const JournalHeader& header,
                                     const plan::Plan& plan, const RankWork& work,
                                     absl::string_view path) {
  Journal journal;
  journal.batch_crcs.resize(work.batches.size());
  journal.written.resize(work.written_files.size());
  const size_t end = text.rfind('\n');
  if (end == absl::string_view::npos) return journal;  // nothing, or a torn header: start anew
  journal.whole_bytes = end + 1;
  const std::vector<absl::string_view> lines = absl::StrSplit(text.substr(0, end), '\n');
  if (lines[0] != JournalHeaderLine(header)) {
    journal.discarded = absl::StrCat(path, " is of another plan, share or rank (redone)");
    journal.whole_bytes = 0;
    return journal;
  }
  journal.fresh = false;
  for (size_t n = 1; n < lines.size(); ++n) {
    auto damaged = [&](absl::string_view why) {
      return absl::DataLossError(absl::StrCat(path, " line ", n + 1, ": ", why));
    };
    const std::optional<absl::string_view> line = Verified(lines[n]);
    if (!line) return damaged("damaged (checksum)");
    const std::vector<absl::string_view> words = absl::StrSplit(*line, ' ');
    size_t index = 0;
    if (words.size() < 2 || !ParseNumber(words[1], &index)) return damaged("no index");
    if (words[0] == "batch") {
      if (index >= work.batches.size()) {
        return damaged(absl::StrCat("batch ", index, " of a share of ", work.batches.size()));
      }
      if (words.size() - 2 != work.batches[index].size()) {
        return damaged(absl::StrCat("batch ", index, " lists ", words.size() - 2, " CRCs for ",
                                    work.batches[index].size(), " segments"));
      }
      std::vector<uint32_t> crcs(words.size() - 2);
      for (size_t i = 0; i < crcs.size(); ++i) {
        if (!ParseNumber(words[i + 2], &crcs[i])) return damaged("a CRC is not a number");
      }
      std::vector<uint32_t>& slot = journal.batch_crcs[index];
      if (!slot.empty() && slot != crcs) {
        return damaged(absl::StrCat("batch ", index, " listed again with other CRCs"));
      }
      slot = std::move(crcs);
    } else if (words[0] == "file") {
      if (index >= work.written_files.size()) {
        return damaged(absl::StrCat("file ", index, " of a share of ", work.written_files.size(),
                                    " written files"));
      }
      ucp::ManifestEntry entry{plan.files[work.written_files[index]].path, 0, 0};
      if (words.size() != 4 || !ParseNumber(words[2], &entry.size) ||
          !ParseNumber(words[3], &entry.crc32)) {
        return damaged("a file line is not `file <index> <size> <crc>`");
      }
      std::optional<ucp::ManifestEntry>& slot = journal.written[index];
      if (slot && *slot != entry) {
        return damaged(absl::StrCat("file ", index, " listed again with another size or CRC"));
      }
      slot = std::move(entry);
    } else {
      return damaged("neither a batch nor a file line");
    }
  }
  return journal;
}

absl::StatusOr<Journal> OpenJournal(const std::string& path, const JournalHeader& header,
                                    const plan::Plan& plan, const RankWork& work, bool fsync) {
  std::string text;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno != ENOENT) return ErrnoToStatus(errno, absl::StrCat("opening ", path));
  if (fd >= 0) {
    struct stat st;
    absl::Status s;
    if (::fstat(fd, &st) != 0) s = ErrnoToStatus(errno, absl::StrCat("stat ", path));
    const uint64_t most = MaxJournalBytes(work);
    if (s.ok() && static_cast<uint64_t>(st.st_size) > most) {
      s = absl::DataLossError(absl::StrCat(
          path, " is ", st.st_size, " bytes; a journal of this rank's share has at most ", most));
    }
    if (s.ok()) text.resize(static_cast<size_t>(st.st_size));
    for (size_t done = 0; s.ok() && done < text.size();) {
      const ssize_t n = ::pread(fd, text.data() + done, text.size() - done, done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) s = ErrnoToStatus(errno, absl::StrCat("reading ", path));
      if (n == 0) text.resize(done);  // shrank meanwhile
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::close(fd);
    UCP_RETURN_IF_ERROR(s);
  }
  UCP_ASSIGN_OR_RETURN(Journal journal, ParseJournal(text, header, plan, work, path));
  if (journal.fresh) {
    const int out = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) return ErrnoToStatus(errno, absl::StrCat("creating ", path));
    ::close(out);
    UCP_RETURN_IF_ERROR(AppendJournal(path, JournalHeaderLine(header), fsync));
  } else if (journal.whole_bytes < text.size()) {
    if (::truncate(path.c_str(), static_cast<off_t>(journal.whole_bytes)) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("cutting the torn last line of ", path));
    }
  }
  return journal;
}

absl::Status AppendJournal(const std::string& path, const std::string& line, bool fsync) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("opening ", path));
  const std::string text = line + "\n";
  const ssize_t n = ::write(fd, text.data(), text.size());
  absl::Status s;
  if (n < 0) s = ErrnoToStatus(errno, "writing " + path);
  if (n >= 0 && n != static_cast<ssize_t>(text.size())) {
    s = absl::ResourceExhaustedError(
        absl::StrCat("writing ", path, ": ", n, " of ", text.size(), " bytes written"));
  }
  if (s.ok() && fsync && ::fsync(fd) != 0) s = ErrnoToStatus(errno, "fsync " + path);
  ::close(fd);
  return s;
}

}  // namespace ucp::converters::execute
