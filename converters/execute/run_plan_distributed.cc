// RunPlanDistributed (run_plan.h): the distributed RunPlan. The division of the work is
// dist_share.h's, the coordination rank_group.h's; this file is the order of events:
//
//   join (handshake: same plan key on every rank) → rank 0: output guard + staging folder
//   (kept from a dead run with the same key) → "go" → every rank: its batches, journalled →
//   report → rank 0: frames, manifest, commit → "done".
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "converters/execute/dist_journal.h"
#include "converters/execute/dist_share.h"
#include "converters/execute/rank_group.h"
#include "converters/execute/run_plan.h"
#include "formats/base/status.h"
#include "ucp/output_guard.h"
#include "ucp/staging_dir.h"

namespace ucp::converters::execute {
namespace {

constexpr char kGo[] = "go";
constexpr char kDone[] = "done";

absl::Duration SecondsFromEnv(const char* name, double fallback) {
  const char* value = std::getenv(name);
  double seconds = 0;
  if (value != nullptr && absl::SimpleAtod(value, &seconds) && seconds > 0) {
    return absl::Seconds(seconds);
  }
  return absl::Seconds(fallback);
}

// Forwards the caller's cancel flag (SIGINT in the CLI) to the group while a run lasts.
class CancelWatch {
 public:
  CancelWatch(const std::atomic<bool>* cancel, RankGroup* group) {
    if (cancel == nullptr) return;
    thread_ = std::thread([this, cancel, group] {
      while (!stop_) {
        if (cancel->load()) {
          group->Fail("interrupted");
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }
  ~CancelWatch() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The status to return after a failure: the group's text (naming the rank that failed first)
// when there is one, else `status` prefixed with this rank.
absl::Status RankError(const RankGroup& group, const absl::Status& status) {
  if (group.failed()) return absl::AbortedError(group.failure());
  return absl::Status(status.code(), absl::StrCat("rank ", group.rank(), ": ", status.message()));
}

// The size of `path`, or -1 when there is no such file.
int64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) ? st.st_size : -1;
}

// This rank's share: every batch not in the journal, then its written files.
absl::StatusOr<RankReport> RunShare(const plan::Plan& plan,
                                    absl::Span<const ByteSource* const> sources,
                                    const RankWork& work, uint64_t key, const std::string& staging,
                                    const RunOptions& options, RankGroup& group,
                                    ExecuteStats* stats) {
  const std::string journal_path = JournalPath(staging, group.rank());
  const JournalHeader header{key, WorkKey(work), group.rank(), group.world_size()};
  absl::StatusOr<Journal> opened =
      OpenJournal(journal_path, header, plan, work, options.execute.fsync);
  if (absl::IsDataLoss(opened.status())) {
    return absl::DataLossError(absl::StrCat(opened.status().message(),
                                            " (rerun without --distributed, or remove ", staging,
                                            ", to start afresh)"));
  }
  UCP_RETURN_IF_ERROR(opened.status());
  Journal journal = std::move(*opened);
  ExecuteOptions execute = options.execute;
  execute.cancel = group.cancel();
  execute.progress = nullptr;
  RankReport report;
  for (size_t b = 0; b < work.batches.size(); ++b) {
    std::vector<uint32_t>& crcs = journal.batch_crcs[b];
    if (crcs.empty()) {
      const plan::Plan batch = BatchPlan(plan, work.batches[b]);
      execute.shared_files = true;
      UCP_ASSIGN_OR_RETURN(ExecuteResult done, ExecutePlan(batch, sources, staging, execute));
      for (const auto& file : done.region_crcs) crcs.insert(crcs.end(), file.begin(), file.end());
      if (crcs.size() != work.batches[b].size()) {
        return absl::InternalError(absl::StrCat("batch ", b, ": ", crcs.size(), " CRCs for ",
                                                work.batches[b].size(), " segments"));
      }
      UCP_RETURN_IF_ERROR(AppendJournal(journal_path, JournalBatchLine(b, crcs), execute.fsync));
      stats->bytes_copied += done.stats.bytes_copied;
      stats->threads = done.stats.threads;
      stats->chunk_bytes = done.stats.chunk_bytes;
      stats->peak_buffer_bytes = std::max(stats->peak_buffer_bytes, done.stats.peak_buffer_bytes);
    }
    report.crcs.insert(report.crcs.end(), crcs.begin(), crcs.end());
  }
  for (size_t w = 0; w < work.written_files.size(); ++w) {
    std::optional<ucp::ManifestEntry>& entry = journal.written[w];
    // A journalled file that is not there at its size (removed, rewritten) is written again.
    if (entry && FileSize(absl::StrCat(staging, "/", entry->path)) !=
                     static_cast<int64_t>(std::min<uint64_t>(entry->size, INT64_MAX))) {
      entry.reset();
    }
    if (!entry) {
      plan::Plan one;
      one.info = plan.info;
      one.sources = plan.sources;
      one.files.push_back(plan.files[work.written_files[w]]);
      execute.shared_files = false;
      UCP_ASSIGN_OR_RETURN(ExecuteResult done, ExecutePlan(one, sources, staging, execute));
      entry = done.files.at(0);
      UCP_RETURN_IF_ERROR(AppendJournal(journal_path, JournalFileLine(w, entry->size, entry->crc32),
                                        execute.fsync));
    }
    report.written.push_back(*entry);
  }
  return report;
}

// Rank 0 after its own share: every report, the frames, the manifest, the commit.
absl::Status Commit(const plan::Plan& plan, const std::vector<RankWork>& work, RankReport own,
                    ucp::StagingDirectory& staging, const RunOptions& options, RankGroup& group,
                    RunResult* result) {
  std::vector<RankReport> reports(work.size());
  reports[0] = std::move(own);
  for (int r = 1; r < group.world_size(); ++r) {
    UCP_ASSIGN_OR_RETURN(const std::string bytes, group.Receive(r));
    UCP_ASSIGN_OR_RETURN(reports[r], DecodeReport(bytes, work[r], r));
    // The sizes a rank reports for its written files go into the manifest: they must be the
    // staged files' own (the folder is shared).
    for (size_t w = 0; w < reports[r].written.size(); ++w) {
      const std::string path =
          absl::StrCat(staging.path(), "/", plan.files[work[r].written_files[w]].path);
      const int64_t size = FileSize(path);
      if (size < 0 || static_cast<uint64_t>(size) != reports[r].written[w].size) {
        return absl::DataLossError(absl::StrCat("rank ", r, " reported ",
                                                reports[r].written[w].size, " bytes for ", path,
                                                ", which has ", size));
      }
    }
  }
  UCP_ASSIGN_OR_RETURN(std::vector<ucp::ManifestEntry> entries,
                       FinishFiles(plan, work, reports, staging.path(), options.execute.fsync));
  std::error_code ec;
  std::filesystem::remove_all(absl::StrCat(staging.path(), "/.ucp-dist"), ec);
  if (ec) return absl::UnavailableError(absl::StrCat("removing ", staging.path(), "/.ucp-dist"));
  if (group.failed()) return absl::AbortedError(group.failure());
  ucp::Manifest manifest;
  manifest.files = std::move(entries);
  for (const ucp::ManifestEntry& e : manifest.files) result->bytes += e.size;
  UCP_RETURN_IF_ERROR(staging.Commit(manifest));
  result->files = std::move(manifest.files);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RunResult> RunPlanDistributed(const plan::Plan& plan,
                                             absl::Span<const ByteSource* const> files,
                                             const RunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const std::string output = ucp::NormalizeOutputPath(options.output);
  if (output.empty()) return absl::InvalidArgumentError("no output folder given");
  UCP_ASSIGN_OR_RETURN(const launch::RankEnv env, launch::ReadRankEnv());
  UCP_ASSIGN_OR_RETURN(const int port, launch::CoordinatorPort(env));
  UCP_ASSIGN_OR_RETURN(std::vector<const ByteSource*> sources, ResolveSources(plan, files));
  UCP_RETURN_IF_ERROR(plan::ValidatePlan(plan));
  // UCP_DIST_MIN_PIECE (bytes): smaller pieces than 1 MiB, so that tests on small checkpoints cut
  // files across ranks.
  uint64_t min_piece = uint64_t{1} << 20;
  if (const char* v = std::getenv("UCP_DIST_MIN_PIECE"); v != nullptr) {
    if (!absl::SimpleAtoi(v, &min_piece) || min_piece == 0) {
      return absl::InvalidArgumentError(absl::StrCat("UCP_DIST_MIN_PIECE='", v, "'"));
    }
  }
  UCP_ASSIGN_OR_RETURN(const std::vector<RankWork> work,
                       DivideWork(plan, env.world_size, min_piece));
  const uint64_t key = PlanKey(plan, env.world_size);
  UCP_ASSIGN_OR_RETURN(
      std::unique_ptr<RankGroup> group,
      RankGroup::Join(env, port, key, SecondsFromEnv("UCP_DIST_CONNECT_TIMEOUT", 300),
                      SecondsFromEnv("UCP_DIST_TIMEOUT", 60)));
  CancelWatch watch(options.execute.cancel, group.get());
  RunResult result;
  result.output = output;
  result.rank = env.rank;
  result.world_size = env.world_size;
  result.rank_bytes = work[env.rank].bytes;
  std::unique_ptr<ucp::StagingDirectory> staging;
  if (env.rank == 0) {
    absl::Status made = CheckOverlap(plan, options);
    absl::StatusOr<std::unique_ptr<ucp::StagingDirectory>> created =
        ucp::StagingDirectory::Create(output, {.force = options.force,
                                               .fsync = options.execute.fsync,
                                               .inputs = options.inputs,
                                               .save_folders = options.save_folders,
                                               .resume_key = absl::StrFormat("%016x", key)});
    if (made.ok()) made = created.status();
    if (made.ok()) {
      staging = std::move(*created);
      made = staging->MakeDirs(plan.Directories());
      std::error_code ec;  // the journals' folder, removed before the commit
      std::filesystem::create_directories(absl::StrCat(staging->path(), "/.ucp-dist"), ec);
      if (made.ok() && ec)
        made = absl::UnavailableError("creating " + staging->path() + "/.ucp-dist");
    }
    if (!made.ok()) {
      group->Fail(std::string(made.message()));
      return RankError(*group, made);
    }
    result.resumed = staging->resumed();
    result.staging = staging->path();
    for (int r = 1; r < env.world_size; ++r) {
      absl::Status sent = group->Send(r, kGo);
      if (!sent.ok()) return RankError(*group, sent);
    }
  } else {
    absl::StatusOr<std::string> go = group->Receive(0);
    if (!go.ok()) return RankError(*group, go.status());
    if (*go != kGo) return RankError(*group, absl::DataLossError("rank 0 sent no start"));
    result.staging = ucp::StagingPathFor(output);
  }
  absl::StatusOr<RankReport> report =
      RunShare(plan, sources, work[env.rank], key, result.staging, options, *group, &result.stats);
  if (!report.ok()) {
    absl::Status error = RankError(*group, report.status());
    group->Fail(std::string(report.status().message()));
    return error;
  }
  if (env.rank == 0) {
    absl::Status committed =
        Commit(plan, work, std::move(*report), *staging, options, *group, &result);
    if (!committed.ok()) {
      absl::Status error = RankError(*group, committed);
      group->Fail(std::string(committed.message()));
      return error;
    }
    for (int r = 1; r < env.world_size; ++r) group->Send(r, kDone).IgnoreError();
  } else {
    absl::Status sent = group->Send(0, EncodeReport(*report));
    if (!sent.ok()) return RankError(*group, sent);
    absl::StatusOr<std::string> done = group->Receive(0);
    if (!done.ok()) return RankError(*group, done.status());
    if (*done != kDone) return RankError(*group, absl::DataLossError("rank 0 sent no result"));
  }
  result.stats.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace ucp::converters::execute
