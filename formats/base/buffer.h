// Buffer: immutable shared bytes (heap, mmap, or a slice of either). Slices share ownership with
// the parent through the shared_ptr aliasing constructor, so they are zero-copy and keep the
// mapping alive.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace ucp {

class Buffer {
 public:
  Buffer() = default;
  // `data` stays valid while `owner` lives.
  Buffer(std::shared_ptr<const void> owner, const std::byte* data, size_t size)
      : owner_(std::move(owner)), data_(data), size_(size) {}

  static Buffer FromVector(std::vector<std::byte> bytes);
  static Buffer CopyOf(absl::Span<const std::byte> bytes);
  static Buffer CopyOf(absl::string_view bytes);

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  absl::Span<const std::byte> span() const { return {data_, size_}; }
  absl::string_view AsStringView() const { return {reinterpret_cast<const char*>(data_), size_}; }
  const std::shared_ptr<const void>& owner() const { return owner_; }

  // Zero-copy sub-range. The caller guarantees offset + length <= size() (UCP_CHECK).
  Buffer Slice(size_t offset, size_t length) const;

 private:
  std::shared_ptr<const void> owner_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ucp
