// StagingDirectory: makes a whole output directory appear atomically. Everything is written under
// a staging folder beside `<out>`, `<parent>/.ucp-<hash of out's name>.partial/` (a short name,
// so that an output name near the 255-byte limit still has one; StagingPathFor). Commit() writes
// the manifest as the last file, fsyncs every file's directory, and only then renames the staging
// folder to `<out>` (and fsyncs the parent). Until then nothing exists at `<out>`, so a failed or
// killed run never leaves a directory that looks complete.
//
// Create() first runs the output guard (ucp/output_guard.h: no overlap with any input, --force
// replaces only ucp's own output), so no verb can write over what it reads.
//
// `<staging>/.ucp-partial` marks a staging folder as ucp's and carries an exclusive flock for
// as long as its writer lives. A later Create() finding the staging folder:
//   * marker present and unlocked (the writer died, e.g. kill -9): removes it and starts afresh
//     (`removed_stale()` says so);
//   * marker locked: FailedPrecondition, another process is writing there;
//   * no marker and not empty: FailedPrecondition, not ucp's folder (never deleted).
// Destroying a StagingDirectory that was not committed removes the staging folder (unless
// StagingOptions::resume_key is set).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ucp/manifest.h"

namespace ucp {

inline constexpr absl::string_view kPartialSuffix = ".partial";
inline constexpr absl::string_view kPartialMarker = ".ucp-partial";

struct StagingOptions {
  bool force = false;  // replace an existing ucp output at `<out>` at Commit (output_guard.h)
  bool fsync = true;   // false: skip fsyncs (tests, scratch output)
  std::vector<std::string> inputs = {};  // every file and folder the run reads (output_guard.h)
  std::vector<std::string> save_folders = {};  // folders that hold an input (output_guard.h)
  // Non-empty (a distributed run's plan fingerprint): a dead run's staging folder whose
  // `.ucp-resume` file holds the same key is kept (`resumed()`), and the folder is kept when this
  // run fails too, so that a rerun finishes it. A folder with another key is removed as usual.
  std::string resume_key = {};
};

// The staging folder of `out`: `<parent>/.ucp-<16 hex digits of FNV-1a(basename)>.partial`.
std::string StagingPathFor(const std::string& out);

class StagingDirectory {
 public:
  // Runs CheckOutput (its errors), then creates the staging folder (and the parents of `out`).
  // FailedPrecondition for a foreign or busy staging folder; I/O errors.
  static absl::StatusOr<std::unique_ptr<StagingDirectory>> Create(
      const std::string& out, const StagingOptions& options = {});
  ~StagingDirectory();
  StagingDirectory(const StagingDirectory&) = delete;
  StagingDirectory& operator=(const StagingDirectory&) = delete;

  const std::string& path() const { return partial_; }  // the staging folder
  const std::string& target() const { return out_; }
  bool removed_stale() const { return removed_stale_; }
  bool resumed() const { return resumed_; }

  // mkdir -p of each `relative` folder under path(); they are fsynced by Commit.
  absl::Status MakeDirs(const std::vector<std::string>& relative);

  // Writes `manifest` as <staging>/ucp_manifest.json, fsyncs the folders, renames the staging
  // folder to `out` (replacing an empty folder, or when forced a previous ucp output, checked
  // again now) and fsyncs the parent.
  absl::Status Commit(const Manifest& manifest);
  // Removes the staging folder now (also done by the destructor when not committed).
  void Abort();

 private:
  StagingDirectory(std::string out, std::string partial, int lock_fd, StagingOptions options)
      : out_(std::move(out)), partial_(std::move(partial)), lock_fd_(lock_fd), options_(options) {}
  absl::Status SyncDirs();

  std::string out_;
  std::string partial_;
  int lock_fd_ = -1;
  StagingOptions options_;
  std::vector<std::string> dirs_;  // relative folders made by MakeDirs
  bool removed_stale_ = false;
  bool resumed_ = false;
  bool committed_ = false;
};

// Writes `<parent of out>/latest_universal` = basename(out) (no newline) atomically, as
// ds_to_universal does after a conversion. `out` may end in '/'.
absl::Status WriteLatestUniversal(const std::string& out, bool fsync = true);

// `out` without trailing slashes ("a/b/" → "a/b"); "/" stays "/".
std::string NormalizeOutputPath(absl::string_view out);

}  // namespace ucp
