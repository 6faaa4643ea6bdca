#include "formats/base/byte_sink.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "formats/base/checked_math.h"
#include "formats/base/status.h"

namespace ucp {
namespace {

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status WriteAll(int fd, const std::byte* data, size_t size, uint64_t offset,
                      const std::string& name) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("writing ", name));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

class FileSink final : public ByteSink {
 public:
  FileSink(std::string path, std::string temp, int fd, FileSinkOptions options)
      : path_(std::move(path)), temp_(std::move(temp)), fd_(fd), options_(options) {}
  ~FileSink() override {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_.c_str());
  }

  absl::Status Append(absl::Span<const std::byte> bytes) override { return WriteAt(size_, bytes); }
  absl::Status WriteAt(uint64_t offset, absl::Span<const std::byte> bytes) override {
    if (committed_)
      return absl::FailedPreconditionError(absl::StrCat(path_, ": write after commit"));
    UCP_RETURN_IF_ERROR(WriteAll(fd_, bytes.data(), bytes.size(), offset, temp_));
    if (offset + bytes.size() > size_) size_ = offset + bytes.size();
    return absl::OkStatus();
  }
  uint64_t Size() const override { return size_; }
  const std::string& name() const override { return path_; }

  absl::Status Commit() override {
    if (committed_) return absl::FailedPreconditionError(absl::StrCat(path_, ": committed twice"));
    if (options_.fsync && ::fsync(fd_) != 0)
      return ErrnoToStatus(errno, absl::StrCat("fsync ", temp_));
    if (::close(fd_) != 0) {
      fd_ = -1;
      return ErrnoToStatus(errno, absl::StrCat("closing ", temp_));
    }
    fd_ = -1;
    if (!options_.overwrite) {
      // link() fails with EEXIST instead of replacing, which makes the no-overwrite check atomic.
      if (::link(temp_.c_str(), path_.c_str()) != 0)
        return ErrnoToStatus(errno, absl::StrCat("creating ", path_));
      ::unlink(temp_.c_str());
    } else if (::rename(temp_.c_str(), path_.c_str()) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("renaming ", temp_, " to ", path_));
    }
    committed_ = true;
    if (options_.fsync) {
      int dir = ::open(DirName(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dir >= 0) {
        ::fsync(dir);
        ::close(dir);
      }
    }
    return absl::OkStatus();
  }

 private:
  std::string path_;
  std::string temp_;
  int fd_;
  FileSinkOptions options_;
  uint64_t size_ = 0;
  bool committed_ = false;
};

std::atomic<uint64_t> temp_counter{0};

}  // namespace

absl::StatusOr<std::unique_ptr<ByteSink>> CreateFileSink(const std::string& path,
                                                         FileSinkOptions options) {
  std::string temp = absl::StrCat(path, ".tmp-", ::getpid(), "-", temp_counter.fetch_add(1));
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("creating ", temp));
  return std::unique_ptr<ByteSink>(new FileSink(path, std::move(temp), fd, options));
}

absl::Status MemorySink::Append(absl::Span<const std::byte> bytes) {
  return WriteAt(bytes_.size(), bytes);
}

absl::Status MemorySink::WriteAt(uint64_t offset, absl::Span<const std::byte> bytes) {
  if (committed_) return absl::FailedPreconditionError(absl::StrCat(name_, ": write after commit"));
  auto end = CheckedAdd(offset, uint64_t{bytes.size()});
  if (!end) return absl::OutOfRangeError(absl::StrCat(name_, ": write offset overflows"));
  if (*end > bytes_.size()) bytes_.resize(*end);
  if (!bytes.empty()) std::memcpy(bytes_.data() + offset, bytes.data(), bytes.size());
  return absl::OkStatus();
}

absl::Status MemorySink::Commit() {
  if (committed_) return absl::FailedPreconditionError(absl::StrCat(name_, ": committed twice"));
  committed_ = true;
  return absl::OkStatus();
}

}  // namespace ucp
