// The ZIP records a torch.save archive is made of, as byte layouts with their PKWARE APPNOTE
// (6.3.x) section numbers, plus the little-endian load/store helpers the reader and the writer
// share. All multi-byte fields are little-endian (APPNOTE 4.4.1.1).
//
// One archive (APPNOTE 4.3.6), as torch 1.13 writes it (docs: deepspeed-formats.md §9.2):
//   [local file header 1][payload 1][data descriptor 1] ... [local file header n][payload n]
//   [data descriptor n][central directory][zip64 end of central directory record]
//   [zip64 end of central directory locator][end of central directory record]
//
// This header is an implementation detail of formats/zip (namespace ucp::internal_zip); users
// include zip_reader.h and zip_writer.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace ucp::internal_zip {

// 4.3.7 Local file header (30 bytes, then name and extra field):
//   0 signature 0x04034b50      4 version needed (u16)    6 general purpose flags (u16)
//   8 compression method (u16) 10 mod time (u16)         12 mod date (u16)
//  14 crc-32 (u32)             18 compressed size (u32)  22 uncompressed size (u32)
//  26 name length (u16)        28 extra field length (u16)
inline constexpr uint32_t kLocalHeaderSignature = 0x04034b50;
inline constexpr uint64_t kLocalHeaderBytes = 30;

// 4.3.9 Data descriptor (written after the payload when flag bit 3 is set): optional signature
// 0x08074b50 (4.3.9.3), crc-32, compressed and uncompressed size; the sizes take 8 bytes each
// when the member uses ZIP64 (4.3.9.2), else 4.
inline constexpr uint32_t kDataDescriptorSignature = 0x08074b50;

// 4.3.12 Central directory file header (46 bytes, then name, extra field and comment):
//   0 signature 0x02014b50      4 version made by (u16)     6 version needed (u16)
//   8 general purpose flags    10 compression method       12 mod time       14 mod date
//  16 crc-32 (u32)             20 compressed size (u32)    24 uncompressed size (u32)
//  28 name length (u16)        30 extra field length (u16) 32 comment length (u16)
//  34 disk number start (u16)  36 internal attributes (u16) 38 external attributes (u32)
//  42 relative offset of local header (u32)
inline constexpr uint32_t kCentralHeaderSignature = 0x02014b50;
inline constexpr uint64_t kCentralHeaderBytes = 46;

// 4.3.14 Zip64 end of central directory record (56 bytes without extensible data):
//   0 signature 0x06064b50      4 size of the rest of the record (u64, 44 here)
//  12 version made by (u16)    14 version needed (u16)    16 this disk (u32)
//  20 disk with the central directory (u32)    24 entries on this disk (u64)
//  32 total entries (u64)      40 central directory size (u64)   48 central directory offset (u64)
inline constexpr uint32_t kZip64EndSignature = 0x06064b50;
inline constexpr uint64_t kZip64EndBytes = 56;

// 4.3.15 Zip64 end of central directory locator (20 bytes):
//   0 signature 0x07064b50      4 disk with the zip64 end record (u32)
//   8 offset of the zip64 end record (u64)     16 total number of disks (u32)
inline constexpr uint32_t kZip64LocatorSignature = 0x07064b50;
inline constexpr uint64_t kZip64LocatorBytes = 20;

// 4.3.16 End of central directory record (22 bytes, then a comment of up to 65535 bytes):
//   0 signature 0x06054b50      4 this disk (u16)          6 disk with the central directory (u16)
//   8 entries on this disk (u16) 10 total entries (u16)   12 central directory size (u32)
//  16 central directory offset (u32)                       20 comment length (u16)
inline constexpr uint32_t kEndSignature = 0x06054b50;
inline constexpr uint64_t kEndBytes = 22;
inline constexpr uint64_t kMaxCommentBytes = 0xFFFF;

// 4.5.1 Extra fields are (id u16, data length u16, data) triples. 4.5.3 Zip64 extended information
// (id 0x0001) holds, in this order and only for the fields whose 32-bit (16-bit for the disk)
// value is all ones: uncompressed size (u64), compressed size (u64), local header offset (u64),
// disk number start (u32).
inline constexpr uint16_t kZip64ExtraId = 0x0001;
// torch's alignment padding field ('FB', inline_container.cc): id 0x4246, data = N bytes of 'Z'.
inline constexpr uint16_t kTorchPaddingExtraId = 0x4246;
inline constexpr uint64_t kExtraHeaderBytes = 4;

// 4.4.4 General purpose bit flags.
inline constexpr uint16_t kFlagEncrypted = 1u << 0;
inline constexpr uint16_t kFlagDataDescriptor = 1u << 3;
inline constexpr uint16_t kFlagStrongEncryption = 1u << 6;
inline constexpr uint16_t kFlagUtf8 = 1u << 11;
// 4.4.5 Compression method 0: stored.
inline constexpr uint16_t kMethodStored = 0;

inline constexpr uint64_t kMax16 = 0xFFFF;
inline constexpr uint64_t kMax32 = 0xFFFFFFFF;

inline uint16_t Load16(const std::byte* p) {
  return static_cast<uint16_t>(std::to_integer<uint16_t>(p[0]) |
                               (std::to_integer<uint16_t>(p[1]) << 8));
}
inline uint32_t Load32(const std::byte* p) {
  return static_cast<uint32_t>(Load16(p)) | (static_cast<uint32_t>(Load16(p + 2)) << 16);
}
inline uint64_t Load64(const std::byte* p) {
  return static_cast<uint64_t>(Load32(p)) | (static_cast<uint64_t>(Load32(p + 4)) << 32);
}

// Appends little-endian fields to a byte string (one record at a time).
class RecordBuilder {
 public:
  RecordBuilder& U16(uint64_t v) { return Le(v, 2); }
  RecordBuilder& U32(uint64_t v) { return Le(v, 4); }
  RecordBuilder& U64(uint64_t v) { return Le(v, 8); }
  RecordBuilder& Bytes(absl::string_view s) {
    bytes_.append(s.data(), s.size());
    return *this;
  }
  RecordBuilder& Fill(size_t n, char c) {
    bytes_.append(n, c);
    return *this;
  }
  absl::Span<const std::byte> span() const {
    return {reinterpret_cast<const std::byte*>(bytes_.data()), bytes_.size()};
  }
  size_t size() const { return bytes_.size(); }
  void Clear() { bytes_.clear(); }

 private:
  RecordBuilder& Le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) bytes_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
    return *this;
  }
  std::string bytes_;
};

}  // namespace ucp::internal_zip
