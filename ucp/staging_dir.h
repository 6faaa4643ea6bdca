// StagingDirectory: makes a whole output directory appear atomically. Everything is written under
// `<out>.partial/`; Commit() writes the manifest as the last file, fsyncs every file's directory,
// and only then renames `<out>.partial` to `<out>` (and fsyncs the parent). Until then nothing
// exists at `<out>`, so a failed or killed run never leaves a directory that looks complete.
//
// `<out>.partial/.ucp-partial` marks a staging folder as ucp's and carries an exclusive flock for
// as long as its writer lives. A later Create() finding `<out>.partial`:
//   * marker present and unlocked (the writer died, e.g. kill -9): removes it and starts afresh
//     (`removed_stale()` says so);
//   * marker locked: FailedPrecondition, another process is writing there;
//   * no marker and not empty: FailedPrecondition, not ucp's folder (never deleted).
// Destroying a StagingDirectory that was not committed removes `<out>.partial`.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ucp/manifest.h"

namespace ucp::store {

inline constexpr absl::string_view kPartialSuffix = ".partial";
inline constexpr absl::string_view kPartialMarker = ".ucp-partial";

struct StagingOptions {
  bool force = false;  // replace an existing `<out>` at Commit (else AlreadyExists up front)
  bool fsync = true;   // false: skip fsyncs (tests, scratch output)
};

class StagingDirectory {
 public:
  // Creates `<out>.partial` (and the parents of `out`). AlreadyExists if `out` exists without
  // options.force; FailedPrecondition for a foreign or busy `<out>.partial`; I/O errors.
  static absl::StatusOr<std::unique_ptr<StagingDirectory>> Create(const std::string& out,
                                                                  const StagingOptions& options = {});
  ~StagingDirectory();
  StagingDirectory(const StagingDirectory&) = delete;
  StagingDirectory& operator=(const StagingDirectory&) = delete;

  const std::string& path() const { return partial_; }  // <out>.partial
  const std::string& target() const { return out_; }
  bool removed_stale() const { return removed_stale_; }

  // mkdir -p of each `relative` folder under path(); they are fsynced by Commit.
  absl::Status MakeDirs(const std::vector<std::string>& relative);

  // Writes `manifest` as <out>.partial/ucp_manifest.json, fsyncs the folders, renames the staging
  // folder to `out` (replacing an existing one when forced) and fsyncs the parent.
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
  bool committed_ = false;
};

// Writes `<parent of out>/latest_universal` = basename(out) (no newline) atomically, as
// ds_to_universal does after a conversion. `out` may end in '/'.
absl::Status WriteLatestUniversal(const std::string& out, bool fsync = true);

// `out` without trailing slashes ("a/b/" → "a/b"); "/" stays "/".
std::string NormalizeOutputPath(absl::string_view out);

}  // namespace ucp::store
