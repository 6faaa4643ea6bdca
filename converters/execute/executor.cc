#include "converters/execute/executor.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "formats/base/crc32.h"
#include "formats/base/status.h"
#include "formats/base/thread_pool.h"
#include "ucp/torch_frame.h"

namespace ucp::converters::execute {
namespace {

using plan::CopyOp;
using plan::Plan;
using plan::PlanFile;
using plan::Region;

constexpr uint64_t kMinChunkBytes = uint64_t{64} << 10;
// Small enough that a chunk stays in the CPU cache between the read, the CRC and the pwrite:
// 16 MiB chunks cost ~30% more system time in the pwrite copy on a 3.2 GB conversion.
constexpr uint64_t kMaxChunkBytes = uint64_t{2} << 20;
constexpr auto kProgressInterval = std::chrono::milliseconds(100);
constexpr auto kLongestTestPause = std::chrono::seconds(60);

absl::Status FsyncFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("opening ", path));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoToStatus(err, absl::StrCat("fsync ", path));
  return absl::OkStatus();
}

// UCP_TEST_PAUSE_AFTER_OPS (executor.h "Test hook"); 0 when unset or not a number.
uint64_t PauseAfterFromEnvironment() {
  const char* value = std::getenv("UCP_TEST_PAUSE_AFTER_OPS");
  uint64_t n = 0;
  return value != nullptr && absl::SimpleAtoi(value, &n) ? n : 0;
}

// An output file written with pwrite from several threads: created, pre-sized, then filled.
class OutputFile {
 public:
  // `shared`: other processes write other parts of the file; it is not truncated.
  static absl::StatusOr<std::unique_ptr<OutputFile>> Create(std::string path, uint64_t size,
                                                            bool shared) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | (shared ? 0 : O_TRUNC) | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("creating ", path));
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
      absl::Status s = ErrnoToStatus(errno, absl::StrCat("sizing ", path));
      ::close(fd);
      return s;
    }
    return std::unique_ptr<OutputFile>(new OutputFile(std::move(path), fd));
  }
  ~OutputFile() {
    if (fd_ >= 0) ::close(fd_);
  }

  absl::Status WriteAt(uint64_t offset, absl::Span<const std::byte> bytes) const {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done,
                           static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoToStatus(errno, absl::StrCat("writing ", path_));
      done += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  // Starts writeback of everything written so far without waiting (Linux sync_file_range), so
  // the disk works while later files are copied and the final fsync finds little left to do.
  void StartWriteback() const { ::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE); }

  absl::Status Close(bool fsync) {
    if (fsync && ::fsync(fd_) != 0) return ErrnoToStatus(errno, absl::StrCat("fsync ", path_));
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return ErrnoToStatus(errno, absl::StrCat("closing ", path_));
    return absl::OkStatus();
  }

 private:
  OutputFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
};

// One task: `length` bytes of op `op` of region `region` of file `file`, from `offset` in the op.
struct Chunk {
  uint32_t file;
  uint32_t region;
  uint32_t op;
  uint64_t offset;
  uint64_t length;
};

struct FileState {
  std::mutex mu;
  std::unique_ptr<OutputFile> out;
  size_t first_chunk = 0;
  size_t end_chunk = 0;
  std::atomic<size_t> remaining{0};
};

class Executor {
 public:
  Executor(const Plan& plan, absl::Span<const ByteSource* const> sources, std::string dir,
           const ExecuteOptions& options, int threads, uint64_t chunk_bytes)
      : plan_(plan),
        sources_(sources),
        dir_(std::move(dir)),
        options_(options),
        threads_(threads),
        chunk_bytes_(chunk_bytes),
        states_(plan.files.size()),
        entries_(plan.files.size()),
        region_crcs_(plan.files.size()) {}

  absl::StatusOr<ExecuteResult> Run();

 private:
  bool Cancelled() const { return options_.cancel != nullptr && options_.cancel->load(); }
  void MaybePauseForTest();
  void ScheduleFile(ThreadPool& pool, size_t f);
  absl::Status Write(size_t f);
  void RunChunk(size_t c);
  absl::Status CopyChunk(const Chunk& chunk, uint32_t* crc);
  absl::Status EnsureOpen(size_t f);
  void ChunkDone(size_t f);
  absl::Status Finalize(size_t f);
  void Fail(const absl::Status& status);
  void Report(bool final);
  bool Defer(std::unique_ptr<OutputFile>& out);
  void SyncDeferred();

  const Plan& plan_;
  absl::Span<const ByteSource* const> sources_;
  std::string dir_;
  const ExecuteOptions& options_;
  int threads_;
  uint64_t chunk_bytes_;
  std::vector<Chunk> chunks_;
  std::vector<uint32_t> crcs_;  // per chunk
  std::vector<FileState> states_;
  std::vector<ucp::ManifestEntry> entries_;
  std::vector<std::vector<uint32_t>> region_crcs_;

  std::atomic<bool> failed_{false};
  std::mutex error_mu_;
  absl::Status error_;
  std::atomic<uint64_t> in_flight_{0};
  std::atomic<uint64_t> peak_{0};
  std::atomic<uint64_t> bytes_done_{0};    // output bytes written (progress)
  std::atomic<uint64_t> bytes_copied_{0};  // CopyOp payload bytes (stats)
  std::atomic<size_t> files_done_{0};
  std::atomic<uint64_t> bytes_total_{0};
  // The test hook: chunks started, and whether the one pause is over.
  uint64_t pause_after_ = PauseAfterFromEnvironment();
  std::atomic<uint64_t> started_{0};
  std::atomic<bool> pause_over_{false};
  std::once_flag pause_ready_once_;
  std::mutex progress_mu_;
  std::chrono::steady_clock::time_point last_report_{};
  // Written files whose fsync waits for the end (options_.fsync): fsyncs in parallel then cost one
  // journal commit for many files instead of one each, and writeback overlaps the copying.
  std::mutex deferred_mu_;
  std::vector<std::unique_ptr<OutputFile>> deferred_;
  size_t deferred_cap_ = 0;  // open descriptors we allow ourselves (half the soft RLIMIT_NOFILE)
};

void Executor::Fail(const absl::Status& status) {
  std::lock_guard<std::mutex> lock(error_mu_);
  if (error_.ok()) error_ = status;
  failed_ = true;
}

void Executor::Report(bool final) {
  if (!options_.progress) return;
  std::lock_guard<std::mutex> lock(progress_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (!final && now - last_report_ < kProgressInterval) return;
  last_report_ = now;
  options_.progress(ExecuteProgress{bytes_done_.load(), bytes_total_.load(), files_done_.load(),
                                    plan_.files.size()});
}

void Executor::MaybePauseForTest() {
  if (pause_after_ == 0 || pause_over_ || started_++ < pause_after_) return;
  std::call_once(pause_ready_once_, [] {
    const char* ready = std::getenv("UCP_TEST_PAUSE_READY");
    const int fd = ready != nullptr ? ::open(ready, O_WRONLY | O_CREAT | O_CLOEXEC, 0644) : -1;
    if (fd >= 0) ::close(fd);
  });
  const auto until = std::chrono::steady_clock::now() + kLongestTestPause;
  while (!Cancelled() && !pause_over_ && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pause_over_ = true;
}

bool Executor::Defer(std::unique_ptr<OutputFile>& out) {
  std::lock_guard<std::mutex> lock(deferred_mu_);
  if (deferred_.size() >= deferred_cap_) return false;
  out->StartWriteback();
  deferred_.push_back(std::move(out));
  return true;
}

void Executor::SyncDeferred() {
  if (deferred_.empty()) return;
  // fsync mostly waits on the disk, not the CPU: more threads than cores let the journal batch.
  ThreadPool pool(static_cast<int>(std::min<size_t>(deferred_.size(), 16)));
  for (std::unique_ptr<OutputFile>& out : deferred_) {
    pool.Schedule([this, &out] {
      absl::Status s = out->Close(true);
      if (!s.ok()) Fail(s);
    });
  }
  pool.Wait();
  deferred_.clear();
}

absl::Status Executor::EnsureOpen(size_t f) {
  FileState& st = states_[f];
  std::lock_guard<std::mutex> lock(st.mu);
  if (st.out != nullptr) return absl::OkStatus();
  UCP_ASSIGN_OR_RETURN(st.out, OutputFile::Create(absl::StrCat(dir_, "/", plan_.files[f].path),
                                                  plan_.files[f].size, options_.shared_files));
  return absl::OkStatus();
}

absl::Status Executor::CopyChunk(const Chunk& chunk, uint32_t* crc) {
  // One buffer per worker thread, grown to the largest chunk it has seen (at most chunk_bytes_).
  thread_local std::unique_ptr<std::byte[]> buffer;
  thread_local uint64_t buffer_size = 0;
  if (buffer_size < chunk.length) {
    buffer.reset();
    buffer = std::make_unique_for_overwrite<std::byte[]>(chunk.length);
    buffer_size = chunk.length;
  }
  const CopyOp& op = plan_.files[chunk.file].regions[chunk.region].ops[chunk.op];
  const ByteSource* source = sources_[op.source];
  if (source == nullptr)
    return absl::InternalError(absl::StrCat("no source for ", plan_.sources[op.source].path));
  const absl::Span<std::byte> bytes(buffer.get(), chunk.length);
  absl::Status read = source->ReadAt(op.source_offset + chunk.offset, bytes);
  if (!read.ok()) {
    const absl::StatusCode code =
        read.code() == absl::StatusCode::kOutOfRange ? absl::StatusCode::kDataLoss : read.code();
    return absl::Status(
        code, absl::StrCat(plan_.sources[op.source].path, ": reading ", chunk.length, " bytes at ",
                           op.source_offset + chunk.offset, " for ", plan_.files[chunk.file].path,
                           ": ", read.message()));
  }
  source->ReleaseRange(op.source_offset + chunk.offset,
                       chunk.length);  // keeps RSS near the buffers
  *crc = Crc32(bytes);
  UCP_RETURN_IF_ERROR(EnsureOpen(chunk.file));
  return states_[chunk.file].out->WriteAt(op.dest_offset + chunk.offset, bytes);
}

void Executor::RunChunk(size_t c) {
  const Chunk& chunk = chunks_[c];
  MaybePauseForTest();
  if (!failed_ && Cancelled()) Fail(absl::CancelledError("interrupted"));
  if (!failed_) {
    const uint64_t now = in_flight_ += chunk.length;
    for (uint64_t p = peak_.load(); now > p && !peak_.compare_exchange_weak(p, now);) {
    }
    absl::Status s = CopyChunk(chunk, &crcs_[c]);
    in_flight_ -= chunk.length;
    if (!s.ok()) Fail(s);
    bytes_done_ += chunk.length;
    bytes_copied_ += chunk.length;
    Report(false);
  }
  ChunkDone(chunk.file);
}

void Executor::ChunkDone(size_t f) {
  if (--states_[f].remaining != 0 || failed_) return;
  absl::Status s = Finalize(f);
  if (!s.ok()) Fail(s);
}

absl::Status Executor::Finalize(size_t f) {
  const PlanFile& pf = plan_.files[f];
  FileState& st = states_[f];
  UCP_RETURN_IF_ERROR(EnsureOpen(f));
  std::vector<uint32_t> region_crcs(pf.regions.size(), 0);
  for (size_t c = st.first_chunk; c < st.end_chunk; ++c) {
    uint32_t& r = region_crcs[chunks_[c].region];
    r = Crc32Combine(r, crcs_[c], chunks_[c].length);
  }
  region_crcs_[f] = region_crcs;
  if (options_.shared_files) {  // the whole file's CRC and frame are the committer's (dist_share.h)
    if (!options_.fsync || !Defer(st.out)) {
      UCP_RETURN_IF_ERROR(st.out->Close(options_.fsync));
      st.out.reset();
    }
    entries_[f] = ucp::ManifestEntry{pf.path, pf.size, 0};
    ++files_done_;
    Report(false);
    return absl::OkStatus();
  }
  // (offset, length, crc) of every part of the file: frame pieces and regions.
  std::vector<std::tuple<uint64_t, uint64_t, uint32_t>> parts;
  for (size_t r = 0; r < pf.regions.size(); ++r) {
    parts.emplace_back(pf.regions[r].offset, pf.regions[r].size, region_crcs[r]);
  }
  if (pf.frame) {
    UCP_ASSIGN_OR_RETURN(std::vector<ucp::FramePiece> pieces,
                         ucp::RenderTorchFrame(*pf.frame, region_crcs));
    for (const ucp::FramePiece& p : pieces) {
      const absl::Span<const std::byte> bytes(reinterpret_cast<const std::byte*>(p.bytes.data()),
                                              p.bytes.size());
      UCP_RETURN_IF_ERROR(st.out->WriteAt(p.offset, bytes));
      parts.emplace_back(p.offset, p.bytes.size(), Crc32(bytes));
      bytes_done_ += p.bytes.size();
    }
  }
  std::sort(parts.begin(), parts.end());
  uint32_t crc = 0;
  uint64_t at = 0;
  for (const auto& [offset, length, part_crc] : parts) {
    if (length == 0) continue;  // an empty storage sits inside a frame piece
    if (offset != at)
      return absl::InternalError(absl::StrCat(pf.path, ": nothing planned at byte ", at));
    crc = Crc32Combine(crc, part_crc, length);
    at += length;
  }
  if (at != pf.size)
    return absl::InternalError(absl::StrCat(pf.path, ": planned bytes end at ", at));
  if (!options_.fsync || !Defer(st.out)) {
    UCP_RETURN_IF_ERROR(st.out->Close(options_.fsync));
    st.out.reset();
  }
  entries_[f] = ucp::ManifestEntry{pf.path, pf.size, crc};
  ++files_done_;
  Report(false);
  return absl::OkStatus();
}

// A file a format library writes (PlanFile::writer): one task, then fsync and its manifest entry.
absl::Status Executor::Write(size_t f) {
  const PlanFile& pf = plan_.files[f];
  const std::string path = absl::StrCat(dir_, "/", pf.path);
  uint64_t reported = 0;
  plan::WriterContext context{path, sources_, [this, &reported](uint64_t bytes) {
                                reported += bytes;
                                bytes_done_ += bytes;
                                Report(false);
                                MaybePauseForTest();  // a writer's steps count as chunks
                                return !Cancelled();
                              }};
  UCP_RETURN_IF_ERROR(pf.writer(context));
  if (Cancelled()) return absl::CancelledError("interrupted");
  if (options_.fsync) UCP_RETURN_IF_ERROR(FsyncFile(path));
  UCP_ASSIGN_OR_RETURN(entries_[f], ucp::HashFile(dir_, pf.path));
  // The writer's estimate becomes the file's real size, in both counters (the total first, so
  // that a concurrent report never sees more done than in total).
  bytes_total_ += entries_[f].size;
  bytes_done_ += entries_[f].size;
  bytes_done_ -= reported;
  bytes_total_ -= pf.size;
  ++files_done_;
  Report(false);
  return absl::OkStatus();
}

void Executor::ScheduleFile(ThreadPool& pool, size_t f) {
  const FileState& st = states_[f];
  if (plan_.files[f].writer || st.first_chunk == st.end_chunk) {
    pool.Schedule([this, f] {
      if (failed_) return;
      absl::Status s = plan_.files[f].writer ? Write(f) : Finalize(f);
      if (!s.ok()) Fail(s);
    });
  }
  for (size_t c = st.first_chunk; c < st.end_chunk; ++c) pool.Schedule([this, c] { RunChunk(c); });
}

absl::StatusOr<ExecuteResult> Executor::Run() {
  const auto start = std::chrono::steady_clock::now();
  for (size_t f = 0; f < plan_.files.size(); ++f) {
    states_[f].first_chunk = chunks_.size();
    const PlanFile& pf = plan_.files[f];
    for (size_t r = 0; r < pf.regions.size(); ++r) {
      for (size_t o = 0; o < pf.regions[r].ops.size(); ++o) {
        const uint64_t length = pf.regions[r].ops[o].length;
        for (uint64_t at = 0; at < length; at += chunk_bytes_) {
          chunks_.push_back(Chunk{static_cast<uint32_t>(f), static_cast<uint32_t>(r),
                                  static_cast<uint32_t>(o), at,
                                  std::min(chunk_bytes_, length - at)});
        }
      }
    }
    states_[f].end_chunk = chunks_.size();
    states_[f].remaining = states_[f].end_chunk - states_[f].first_chunk;
  }
  crcs_.assign(chunks_.size(), 0);
  bytes_total_ = plan_.TotalBytes();
  if (struct rlimit nofile; options_.fsync && ::getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    const uint64_t soft = nofile.rlim_cur == RLIM_INFINITY ? 65536 : nofile.rlim_cur;
    deferred_cap_ = soft > 256 ? std::min<uint64_t>((soft - 128) / 2, 16384) : 0;
  }
  {
    ThreadPool pool(threads_);
    for (size_t f = 0; f < plan_.files.size(); ++f) ScheduleFile(pool, f);
    pool.Wait();
  }
  if (!failed_ && Cancelled()) Fail(absl::CancelledError("interrupted"));
  if (!failed_) SyncDeferred();
  if (failed_) return error_;
  Report(true);
  ExecuteResult result;
  result.files = std::move(entries_);
  result.region_crcs = std::move(region_crcs_);
  result.stats.threads = threads_;
  result.stats.chunk_bytes = chunk_bytes_;
  result.stats.peak_buffer_bytes = peak_.load();
  result.stats.bytes_copied = bytes_copied_.load();
  result.stats.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace

absl::StatusOr<ExecuteResult> ExecutePlan(const Plan& plan,
                                          absl::Span<const ByteSource* const> sources,
                                          const std::string& dir, const ExecuteOptions& options) {
  if (options.memory_limit == 0) return absl::InvalidArgumentError("memory limit must be positive");
  if (sources.size() != plan.sources.size()) {
    return absl::InvalidArgumentError(absl::StrCat(sources.size(), " byte sources for a plan of ",
                                                   plan.sources.size(), " sources"));
  }
  if (!options.shared_files) UCP_RETURN_IF_ERROR(plan::ValidatePlan(plan));
  int threads =
      options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::max(threads, 1);
  threads = static_cast<int>(
      std::min<uint64_t>(threads, std::max<uint64_t>(1, options.memory_limit / kMinChunkBytes)));
  const uint64_t chunk = std::clamp<uint64_t>(options.memory_limit / threads, 1, kMaxChunkBytes);
  Executor executor(plan, sources, dir, options, threads, chunk);
  return executor.Run();
}

}  // namespace ucp::converters::execute
