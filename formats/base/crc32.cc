#include "formats/base/crc32.h"

#include <zlib.h>

#include <algorithm>
#include <limits>

namespace ucp {

// zlib's crc32 (braided, several GB/s) and crc32_combine; zlib takes uInt lengths, so feed it in
// chunks.
uint32_t Crc32(absl::Span<const std::byte> bytes, uint32_t crc) {
  const auto* p = reinterpret_cast<const Bytef*>(bytes.data());
  size_t left = bytes.size();
  uLong c = crc;
  while (left > 0) {
    size_t n = std::min<size_t>(left, size_t{1} << 30);
    c = ::crc32(c, p, static_cast<uInt>(n));
    p += n;
    left -= n;
  }
  return static_cast<uint32_t>(c);
}

uint32_t Crc32Combine(uint32_t crc_a, uint32_t crc_b, uint64_t length_b) {
  return static_cast<uint32_t>(::crc32_combine64(crc_a, crc_b, static_cast<z_off64_t>(length_b)));
}

}  // namespace ucp
