// ByteSource: random-access reads of an input (a file or memory). Readers of every format take a
// ByteSource, so tests can feed them bytes from memory and the CLI can feed them mapped files.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "formats/base/buffer.h"

namespace ucp {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Total size in bytes.
  virtual uint64_t Size() const = 0;
  // Fills `out` from `offset`. OutOfRange if the range is not inside [0, Size()); Unavailable or
  // DataLoss on I/O errors (including a file that shrank).
  virtual absl::Status ReadAt(uint64_t offset, absl::Span<std::byte> out) const = 0;
  // The whole source as one zero-copy buffer when it is mapped or in memory, else nullopt.
  virtual std::optional<Buffer> Map() const { return std::nullopt; }
  // The name used in error messages (a path, or "<memory>").
  virtual const std::string& name() const = 0;
  // A hint that [offset, offset + length) will not be read again soon. A mapped file drops those
  // pages from the process's resident set (they stay in the page cache and fault back in on the
  // next access), so streaming through large files keeps memory bounded. Default: nothing.
  virtual void ReleaseRange(uint64_t offset, uint64_t length) const {}

  // Reads [offset, offset+length) into a buffer: a zero-copy slice when mapped, else a heap copy.
  absl::StatusOr<Buffer> ReadBuffer(uint64_t offset, uint64_t length) const;
};

// Opens `path` for reading. With `map`, the file is also mmapped (read-only, MAP_SHARED) and
// Map() returns it; empty files are never mapped. NotFound / PermissionDenied / Unavailable;
// InvalidArgument "<path>: not a regular file" for anything else after following links (a FIFO,
// a socket, a device, a folder): never blocks, a FIFO is opened O_NONBLOCK and refused.
absl::StatusOr<std::shared_ptr<ByteSource>> OpenFileSource(const std::string& path,
                                                           bool map = true);

// A read-only descriptor of the regular file `path` (O_CLOEXEC, blocking reads), with its size:
// what OpenFileSource and every other reader of input files open through, with its errors.
struct RegularFile {
  int fd = -1;  // the caller closes it
  uint64_t size = 0;
};
absl::StatusOr<RegularFile> OpenRegularFile(const std::string& path);

// The whole content of a small regular file (`latest`, JSON indexes, manifests). DataLoss when
// it is larger than `max_bytes`; OpenRegularFile's errors.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, uint64_t max_bytes);

// A source over bytes already in memory.
std::shared_ptr<ByteSource> MemorySource(Buffer bytes, std::string name = "<memory>");

}  // namespace ucp
