// ExecutePlan: writes the files of a Plan (converters/plan/plan.h) into a folder, copying every
// CopyOp's byte range from the mapped sources with bounded memory, in parallel on a ThreadPool.
//
// How:
//   * Each CopyOp is cut into chunks of at most `chunk_bytes`; a chunk is one task: ReadAt (a
//     memcpy from the source's mapping, or pread) into the worker's buffer, CRC-32 of the chunk,
//     pwrite at its place in the output file. Tasks run in plan order, so each shard is read
//     front to back (the planner emits files in DeepSpeed's flat parameter order).
//   * Output files are created and pre-sized (ftruncate) by their first chunk and closed by their
//     last: at most about `threads` files are being written at once (written files may stay open
//     for the final fsync, see below).
//   * When the last chunk of a file is done, the region (storage) CRCs are combined from the chunk
//     CRCs in order (Crc32Combine), the TorchFrame's bytes are rendered with them and written, the
//     whole-file CRC is combined the same way (for the manifest), and writeback of the file is
//     started (sync_file_range). No byte is read back.
//   * fsync: the written files stay open and are fsynced together at the end, from up to 16
//     threads, so that ext4 commits its journal once for many files rather than once per file
//     (a 30 MB, 402-file convert took 2.0 s with one fsync per file, 0.6 s so). At most half the
//     soft RLIMIT_NOFILE stay open; files beyond that are fsynced when written, as before.
//   * Memory: threads × chunk_bytes ≤ memory_limit. Workers keep one buffer each; nothing else
//     scales with the data (frames hold only pickles and zip headers). A file with a FileWriter
//     (HDF5) is one task that calls it; its memory is the writer's (one tensor at a time), and
//     the file is read back once for its manifest CRC.
//   * Cancellation: `cancel` is read before every chunk; once set, no new chunk starts, the
//     running ones finish, and ExecutePlan returns Cancelled (the CLI sets it on SIGINT/SIGTERM;
//     the caller then discards the folder).
//   * Test hook: with UCP_TEST_PAUSE_AFTER_OPS=N in the environment, the workers stop before
//     copy chunk N+1 (so N chunks have been started; a writer's reported steps count as chunks)
//     and create the file named by
//     UCP_TEST_PAUSE_READY, then wait until cancelled (at most 60 s, then go on): a test can
//     signal or kill a run that is certainly in the middle of writing.
// The caller owns the output folder (ucp/staging_dir.h): it must exist with every folder of
// Plan::Directories(); on error, files may be half written and the caller discards the folder.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "converters/plan/plan.h"
#include "formats/base/byte_source.h"
#include "ucp/manifest.h"

namespace ucp::converters::execute {

inline constexpr uint64_t kDefaultMemoryLimit = uint64_t{256} << 20;

// Bytes of output files written: copied payloads, frames, written files. At the end bytes_done ==
// bytes_total == the sum of the written files' sizes (a writer's estimate is replaced by its
// file's real size when it is done).
struct ExecuteProgress {
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0;  // Plan::TotalBytes() at the start
  size_t files_done = 0;
  size_t files_total = 0;
};

struct ExecuteOptions {
  int threads = 0;  // <= 0: the machine's hardware threads
  uint64_t memory_limit =
      kDefaultMemoryLimit;  // bytes of copy buffers in flight, all threads together
  bool fsync = true;        // every file fsynced before ExecutePlan returns
  // Called at most every 100 ms and once at the end, never concurrently, from worker threads.
  std::function<void(const ExecuteProgress&)> progress = nullptr;
  const std::atomic<bool>* cancel = nullptr;  // set: stop between chunks, return Cancelled
  // The plan's files are shares of files other processes write too (a distributed run,
  // dist_share.h): they are opened without truncation, their regions need not cover them, no
  // frame is rendered, and ValidatePlan is skipped (the caller validated the whole plan). The
  // manifest entries then carry no CRC; ExecuteResult::region_crcs has the regions' CRCs.
  bool shared_files = false;
  // For RunPlan (run_plan.h), not ExecutePlan: this process is one rank of a distributed run
  // (RunPlanDistributed, ranks from the launcher's environment: rank_group.h). With one rank (no
  // launcher variables) RunPlan runs as usual.
  bool distributed = false;
};

struct ExecuteStats {
  int threads = 0;
  uint64_t chunk_bytes = 0;
  uint64_t peak_buffer_bytes = 0;  // largest sum of chunk buffers in use at one time
  uint64_t bytes_copied = 0;
  double seconds = 0;
};

struct ExecuteResult {
  std::vector<ucp::ManifestEntry> files;  // one per plan file: path, size, CRC-32 of the whole file
  // Per plan file, the CRC-32 of each of its regions (empty for written files).
  std::vector<std::vector<uint32_t>> region_crcs;
  ExecuteStats stats;
};

// `sources[i]` serves Plan::sources[i] (null for sources no op reads). `dir` is the folder the
// plan's relative paths are written under. Errors: the first failing read or write (with the
// file name; DataLoss when a source is shorter than planned), InvalidArgument for a zero
// memory_limit or a source count that does not match the plan, Internal for a plan that fails
// ValidatePlan, Cancelled when options.cancel was set.
absl::StatusOr<ExecuteResult> ExecutePlan(const plan::Plan& plan,
                                          absl::Span<const ByteSource* const> sources,
                                          const std::string& dir,
                                          const ExecuteOptions& options = {});

}  // namespace ucp::converters::execute
