#include "formats/base/buffer.h"

#include <cstring>

#include "formats/base/checked_math.h"
#include "formats/base/status.h"

namespace ucp {

Buffer Buffer::FromVector(std::vector<std::byte> bytes) {
  auto owner = std::make_shared<std::vector<std::byte>>(std::move(bytes));
  const std::byte* data = owner->data();
  size_t size = owner->size();
  return Buffer(std::move(owner), data, size);
}

Buffer Buffer::CopyOf(absl::Span<const std::byte> bytes) {
  return FromVector(std::vector<std::byte>(bytes.begin(), bytes.end()));
}

Buffer Buffer::CopyOf(absl::string_view bytes) {
  const auto* p = reinterpret_cast<const std::byte*>(bytes.data());
  return CopyOf(absl::Span<const std::byte>(p, bytes.size()));
}

Buffer Buffer::Slice(size_t offset, size_t length) const {
  UCP_CHECK(RangeInside(offset, length, size_))
      << "slice " << offset << "+" << length << " of " << size_;
  return Buffer(owner_, data_ + offset, length);
}

}  // namespace ucp
