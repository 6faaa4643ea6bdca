// ByteSink: where a writer puts its output. FileSink writes `<path>.tmp-<pid>-<n>` beside the
// target and Commit() fsyncs it, renames it over `path` and fsyncs the directory; a sink that is
// destroyed without Commit() removes its temp file, so a failed or killed write never leaves a
// partial file at `path`. MemorySink keeps the bytes (tests).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace ucp {

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  // Appends at the end.
  virtual absl::Status Append(absl::Span<const std::byte> bytes) = 0;
  // Writes at an absolute offset (the sink grows as needed). Used by executors that pre-size.
  virtual absl::Status WriteAt(uint64_t offset, absl::Span<const std::byte> bytes) = 0;
  // Bytes written so far (the end position of Append).
  virtual uint64_t Size() const = 0;
  // Makes the output durable and visible. After Commit, no further writes.
  virtual absl::Status Commit() = 0;
  virtual const std::string& name() const = 0;

  absl::Status Append(absl::string_view bytes) {
    return Append({reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()});
  }
};

struct FileSinkOptions {
  bool overwrite = true;  // false: Commit fails with AlreadyExists if `path` exists
  bool fsync = true;      // false: skip fsync (tests, scratch output)
};

absl::StatusOr<std::unique_ptr<ByteSink>> CreateFileSink(const std::string& path,
                                                         FileSinkOptions options = {});

class MemorySink final : public ByteSink {
 public:
  explicit MemorySink(std::string name = "<memory>") : name_(std::move(name)) {}
  absl::Status Append(absl::Span<const std::byte> bytes) override;
  absl::Status WriteAt(uint64_t offset, absl::Span<const std::byte> bytes) override;
  uint64_t Size() const override { return bytes_.size(); }
  absl::Status Commit() override;
  const std::string& name() const override { return name_; }
  using ByteSink::Append;

  bool committed() const { return committed_; }
  const std::vector<std::byte>& bytes() const { return bytes_; }
  std::vector<std::byte> TakeBytes() { return std::move(bytes_); }

 private:
  std::string name_;
  std::vector<std::byte> bytes_;
  bool committed_ = false;
};

}  // namespace ucp
