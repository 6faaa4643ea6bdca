#include "ucp/staging_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "absl/container/btree_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "formats/base/byte_sink.h"
#include "formats/base/status.h"
#include "ucp/output_guard.h"
#include "ucp/ucp_layout.h"

namespace ucp {
namespace {

namespace fs = std::filesystem;

absl::Status FsError(const std::error_code& ec, absl::string_view what) {
  return ::ucp::ErrnoToStatus(ec.value(), what);
}

absl::Status FsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("opening ", path));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoToStatus(err, absl::StrCat("fsync ", path));
  return absl::OkStatus();
}

std::string ParentOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// FNV-1a, 64 bits: a stable short name for the staging folder of an output name.
uint64_t NameHash(absl::string_view name) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

// Handles an existing staging folder: removes it when it is a dead ucp run's, else explains.
constexpr absl::string_view kResumeFile = ".ucp-resume";

std::string ReadSmallFile(const std::string& path) {
  std::string out(256, '\0');
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  const ssize_t n = ::read(fd, out.data(), out.size());
  ::close(fd);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

// Handles an existing staging folder: removes it when it is a dead ucp run's (keeps it when its
// resume key is `resume_key`, setting *resumed), else explains.
absl::Status ClearStalePartial(const std::string& partial, const std::string& resume_key,
                               bool* removed, bool* resumed) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(partial, ec))) return absl::OkStatus();
  if (!fs::is_directory(fs::symlink_status(partial, ec))) {
    return absl::FailedPreconditionError(
        absl::StrCat(partial, " exists and is not a folder; remove it"));
  }
  const std::string marker = absl::StrCat(partial, "/", kPartialMarker);
  int fd = ::open(marker.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    const bool busy = ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    ::close(fd);
    if (busy) {
      return absl::FailedPreconditionError(
          absl::StrCat(partial, ": another ucp process is writing this output now"));
    }
    if (!resume_key.empty() &&
        ReadSmallFile(absl::StrCat(partial, "/", kResumeFile)) == resume_key) {
      *resumed = true;
      return absl::OkStatus();
    }
  } else if (!fs::is_empty(partial, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(
        partial, " exists and was not made by ucp (no ", kPartialMarker, "); remove it"));
  }
  fs::remove_all(partial, ec);
  if (ec) return FsError(ec, absl::StrCat("removing the stale ", partial));
  *removed = true;
  return absl::OkStatus();
}

}  // namespace

std::string StagingPathFor(const std::string& out_in) {
  const std::string out = NormalizeOutputPath(out_in);
  const std::string parent = ParentOf(out);
  return absl::StrFormat("%s/.ucp-%016x%s", parent == "/" ? "" : parent, NameHash(BaseName(out)),
                         kPartialSuffix);
}

std::string NormalizeOutputPath(absl::string_view out) {
  while (out.size() > 1 && out.back() == '/') out.remove_suffix(1);
  return std::string(out);
}

absl::StatusOr<std::unique_ptr<StagingDirectory>> StagingDirectory::Create(
    const std::string& out_in, const StagingOptions& options) {
  const std::string out = NormalizeOutputPath(out_in);
  if (out.empty() || out == "/" || out == "." || out == "..") {
    return absl::InvalidArgumentError(absl::StrCat("bad output folder '", out_in, "'"));
  }
  UCP_RETURN_IF_ERROR(CheckOutput(
      out,
      {.inputs = options.inputs, .save_folders = options.save_folders, .force = options.force}));
  std::error_code ec;
  fs::create_directories(ParentOf(out), ec);
  if (ec) return FsError(ec, absl::StrCat("creating ", ParentOf(out)));
  const std::string partial = StagingPathFor(out);
  bool removed = false, resumed = false;
  UCP_RETURN_IF_ERROR(ClearStalePartial(partial, options.resume_key, &removed, &resumed));
  if (!resumed && ::mkdir(partial.c_str(), 0755) != 0)
    return ErrnoToStatus(errno, absl::StrCat("creating ", partial));
  const std::string marker = absl::StrCat(partial, "/", kPartialMarker);
  int fd = ::open(marker.c_str(), O_RDWR | O_CREAT | (resumed ? 0 : O_EXCL) | O_CLOEXEC, 0644);
  if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    absl::Status s = ErrnoToStatus(errno, absl::StrCat("locking ", marker));
    if (fd >= 0) ::close(fd);
    fs::remove_all(partial, ec);
    return s;
  }
  const std::string note =
      absl::StrCat("ucp staging folder of process ", ::getpid(), " for ", out, "\n");
  if (::write(fd, note.data(), note.size()) < 0) {
    // The marker's content is informational; the lock is what matters.
  }
  if (!options.resume_key.empty() && !resumed) {
    const std::string key_path = absl::StrCat(partial, "/", kResumeFile);
    const int key_fd = ::open(key_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const bool wrote =
        key_fd >= 0 && ::write(key_fd, options.resume_key.data(), options.resume_key.size()) ==
                           static_cast<ssize_t>(options.resume_key.size());
    if (key_fd >= 0) ::close(key_fd);
    if (!wrote) {
      ::close(fd);
      fs::remove_all(partial, ec);
      return absl::UnavailableError(absl::StrCat("writing ", key_path));
    }
  }
  auto dir = std::unique_ptr<StagingDirectory>(new StagingDirectory(out, partial, fd, options));
  dir->removed_stale_ = removed;
  dir->resumed_ = resumed;
  return dir;
}

StagingDirectory::~StagingDirectory() { Abort(); }

void StagingDirectory::Abort() {
  if (!committed_ && options_.resume_key.empty()) {
    std::error_code ec;
    fs::remove_all(partial_, ec);
  }
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);
    lock_fd_ = -1;
  }
}

absl::Status StagingDirectory::MakeDirs(const std::vector<std::string>& relative) {
  std::error_code ec;
  for (const std::string& rel : relative) {
    fs::create_directories(absl::StrCat(partial_, "/", rel), ec);
    if (ec) return FsError(ec, absl::StrCat("creating ", partial_, "/", rel));
    dirs_.push_back(rel);
  }
  return absl::OkStatus();
}

absl::Status StagingDirectory::SyncDirs() {
  if (!options_.fsync) return absl::OkStatus();
  absl::btree_set<std::string> all;  // every folder made below the staging root, with its parents
  for (const std::string& rel : dirs_) {
    for (std::string d = rel; !d.empty() && d != ".";
         d = d.find('/') == std::string::npos ? "" : ParentOf(d)) {
      all.insert(d);
    }
  }
  for (const std::string& rel : all)
    UCP_RETURN_IF_ERROR(FsyncPath(absl::StrCat(partial_, "/", rel)));
  return FsyncPath(partial_);
}

absl::Status StagingDirectory::Commit(const Manifest& manifest) {
  if (committed_ || lock_fd_ < 0)
    return absl::FailedPreconditionError(absl::StrCat(partial_, ": committed twice"));
  {
    UCP_ASSIGN_OR_RETURN(
        std::unique_ptr<ByteSink> sink,
        CreateFileSink(absl::StrCat(partial_, "/", kManifestFile), {.fsync = options_.fsync}));
    UCP_RETURN_IF_ERROR(sink->Append(ManifestToJson(manifest)));
    UCP_RETURN_IF_ERROR(sink->Commit());
  }
  const std::string marker = absl::StrCat(partial_, "/", kPartialMarker);
  if (::unlink(marker.c_str()) != 0) return ErrnoToStatus(errno, absl::StrCat("removing ", marker));
  if (!options_.resume_key.empty()) {
    const std::string key_path = absl::StrCat(partial_, "/", kResumeFile);
    if (::unlink(key_path.c_str()) != 0 && errno != ENOENT)
      return ErrnoToStatus(errno, absl::StrCat("removing ", key_path));
  }
  UCP_RETURN_IF_ERROR(SyncDirs());

  std::error_code ec;
  std::string replaced;
  // An empty folder is replaced by the rename itself; anything else is moved aside first.
  if (fs::exists(fs::symlink_status(out_, ec)) && !IsEmptyFolder(out_)) {
    if (!options_.force)
      return absl::AlreadyExistsError(absl::StrCat(out_, " appeared while writing"));
    UCP_RETURN_IF_ERROR(CheckOutput(out_, {.force = true}));  // still only ucp's own output
    replaced =
        absl::StrCat(partial_.substr(0, partial_.size() - kPartialSuffix.size()), ".replaced");
    fs::remove_all(replaced, ec);
    if (::rename(out_.c_str(), replaced.c_str()) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("moving the old ", out_, " aside"));
    }
  }
  if (::rename(partial_.c_str(), out_.c_str()) != 0) {
    absl::Status s = ErrnoToStatus(errno, absl::StrCat("renaming ", partial_, " to ", out_));
    if (!replaced.empty()) ::rename(replaced.c_str(), out_.c_str());
    return s;
  }
  committed_ = true;
  ::close(lock_fd_);
  lock_fd_ = -1;
  if (!replaced.empty()) fs::remove_all(replaced, ec);
  if (options_.fsync) UCP_RETURN_IF_ERROR(FsyncPath(ParentOf(out_)));
  return absl::OkStatus();
}

absl::Status WriteLatestUniversal(const std::string& out_in, bool fsync) {
  const std::string out = NormalizeOutputPath(out_in);
  const size_t slash = out.rfind('/');
  const std::string base = slash == std::string::npos ? out : out.substr(slash + 1);
  const std::string path = absl::StrCat(ParentOf(out), "/", kLatestUniversalFile);
  UCP_ASSIGN_OR_RETURN(std::unique_ptr<ByteSink> sink, CreateFileSink(path, {.fsync = fsync}));
  UCP_RETURN_IF_ERROR(sink->Append(base));
  return sink->Commit();
}

}  // namespace ucp
