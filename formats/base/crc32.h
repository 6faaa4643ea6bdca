// CRC-32 (ISO-HDLC, the zip polynomial 0xEDB88320) and Combine, which gives the CRC of A‖B from
// crc(A), crc(B) and len(B): executors checksum fragments in parallel and combine them per record.
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace ucp {

// CRC of `bytes` continuing from `crc` (0 to start).
uint32_t Crc32(absl::Span<const std::byte> bytes, uint32_t crc = 0);
inline uint32_t Crc32(absl::string_view bytes, uint32_t crc = 0) {
  return Crc32({reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()}, crc);
}
// crc(A‖B) from crc_a = crc(A), crc_b = crc(B), length_b = len(B).
uint32_t Crc32Combine(uint32_t crc_a, uint32_t crc_b, uint64_t length_b);

}  // namespace ucp
