#include "formats/base/byte_source.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "formats/base/checked_math.h"
#include "formats/base/status.h"

namespace ucp {
namespace {

absl::Status RangeError(const ByteSource& src, uint64_t offset, uint64_t length) {
  return absl::OutOfRangeError(absl::StrCat(src.name(), ": read of ", length, " bytes at offset ",
                                            offset, " is past the end (size ", src.Size(), ")"));
}

class FileSource final : public ByteSource {
 public:
  FileSource(std::string path, int fd, uint64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}
  ~FileSource() override {
    if (fd_ >= 0) ::close(fd_);
  }

  uint64_t Size() const override { return size_; }
  const std::string& name() const override { return path_; }
  std::optional<Buffer> Map() const override { return mapping_; }

  void ReleaseRange(uint64_t offset, uint64_t length) const override {
    if (!mapping_ || !RangeInside(offset, length, size_)) return;
    static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t base = reinterpret_cast<uintptr_t>(mapping_->data());  // page-aligned (mmap)
    const uintptr_t begin = (base + offset + page - 1) / page * page;  // whole pages inside only
    const uintptr_t end = (base + offset + length) / page * page;
    // A read-only shared file mapping: MADV_DONTNEED only unmaps, the file's bytes are unchanged.
    if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
  }

  absl::Status ReadAt(uint64_t offset, absl::Span<std::byte> out) const override {
    if (!RangeInside(offset, out.size(), size_)) return RangeError(*this, offset, out.size());
    if (mapping_) {
      std::memcpy(out.data(), mapping_->data() + offset, out.size());
      return absl::OkStatus();
    }
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n =
          ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoToStatus(errno, absl::StrCat("reading ", path_));
      }
      if (n == 0) return absl::DataLossError(absl::StrCat(path_, ": file shrank while reading"));
      done += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  absl::Status MapWhole() {
    if (size_ == 0) return absl::OkStatus();
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) return ErrnoToStatus(errno, absl::StrCat("mapping ", path_));
    uint64_t size = size_;
    std::shared_ptr<const void> owner(
        p, [size](const void* q) { ::munmap(const_cast<void*>(q), size); });
    mapping_ = Buffer(std::move(owner), static_cast<const std::byte*>(p), size_);
    // The mapping keeps the file; closing the descriptor lets an index hold thousands of shards
    // open without raising `ulimit -n`.
    ::close(fd_);
    fd_ = -1;
    return absl::OkStatus();
  }

 private:
  std::string path_;
  int fd_;
  uint64_t size_;
  std::optional<Buffer> mapping_;
};

class MemoryByteSource final : public ByteSource {
 public:
  MemoryByteSource(Buffer bytes, std::string name)
      : bytes_(std::move(bytes)), name_(std::move(name)) {}
  uint64_t Size() const override { return bytes_.size(); }
  const std::string& name() const override { return name_; }
  std::optional<Buffer> Map() const override { return bytes_; }
  absl::Status ReadAt(uint64_t offset, absl::Span<std::byte> out) const override {
    if (!RangeInside(offset, out.size(), bytes_.size()))
      return RangeError(*this, offset, out.size());
    if (!out.empty()) std::memcpy(out.data(), bytes_.data() + offset, out.size());
    return absl::OkStatus();
  }

 private:
  Buffer bytes_;
  std::string name_;
};

}  // namespace

absl::StatusOr<Buffer> ByteSource::ReadBuffer(uint64_t offset, uint64_t length) const {
  if (!RangeInside(offset, length, Size())) return RangeError(*this, offset, length);
  if (std::optional<Buffer> mapped = Map()) return mapped->Slice(offset, length);
  std::vector<std::byte> bytes(length);
  UCP_RETURN_IF_ERROR(ReadAt(offset, absl::MakeSpan(bytes)));
  return Buffer::FromVector(std::move(bytes));
}

absl::StatusOr<RegularFile> OpenRegularFile(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. The type is
  // checked on the descriptor (no race with a rename), then blocking reads are restored.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("opening ", path));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return ErrnoToStatus(e, absl::StrCat("stat ", path));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    int e = errno;
    ::close(fd);
    return ErrnoToStatus(e, absl::StrCat("opening ", path));
  }
  return RegularFile{fd, static_cast<uint64_t>(st.st_size)};
}

absl::StatusOr<std::shared_ptr<ByteSource>> OpenFileSource(const std::string& path, bool map) {
  UCP_ASSIGN_OR_RETURN(RegularFile file, OpenRegularFile(path));
  auto source = std::make_shared<FileSource>(path, file.fd, file.size);
  if (map) UCP_RETURN_IF_ERROR(source->MapWhole());
  return std::shared_ptr<ByteSource>(std::move(source));
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, uint64_t max_bytes) {
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<ByteSource> file, OpenFileSource(path, /*map=*/false));
  if (file->Size() > max_bytes) {
    return absl::DataLossError(absl::StrCat(path, ": ", file->Size(), " bytes, more than the ",
                                            max_bytes, " this file may have"));
  }
  std::string text(file->Size(), '\0');
  UCP_RETURN_IF_ERROR(
      file->ReadAt(0, absl::MakeSpan(reinterpret_cast<std::byte*>(text.data()), text.size())));
  return text;
}

std::shared_ptr<ByteSource> MemorySource(Buffer bytes, std::string name) {
  return std::make_shared<MemoryByteSource>(std::move(bytes), std::move(name));
}

}  // namespace ucp
