// ZipReader: the container layer under the torch.save reader. It indexes a ZIP archive of
// *stored* members (the only kind torch.save writes, deepspeed-formats.md §9.2) and hands out each
// member's payload as a Buffer: a zero-copy slice when the ByteSource is mapped.
//
// The file is treated as hostile. Open() validates everything before use: the end of central
// directory record (APPNOTE 4.3.16) and, when present, the ZIP64 record and locator (4.3.14,
// 4.3.15) must agree; the central directory (4.3.12) must lie between the last payload and the end
// records; every local header (4.3.7) must carry the same name as its central entry; payloads must
// lie inside the file, before the central directory, and must not overlap. Every count, size and
// offset is checked with overflow-safe arithmetic, and against ZipLimits, before anything is
// allocated from it. Open does not check CRCs (torch.load does not either); VerifyCrc does.
//
// Errors name the file (ByteSource::name()) and the member:
//   DataLoss        corrupt or hostile archive (truncated, inconsistent, overlapping, duplicate
//                   or NUL-containing names, limits exceeded), CRC mismatch in VerifyCrc
//   Unimplemented   compressed (method != 0) or encrypted members, multi-disk archives
//   others          from the ByteSource (Unavailable, DataLoss, OutOfRange on I/O errors)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "formats/base/buffer.h"
#include "formats/base/byte_source.h"

namespace ucp::formats::zip {

// Bounds on what a file may claim before Open() rejects it (DataLoss) rather than allocate.
struct ZipLimits {
  uint64_t max_entries = uint64_t{1} << 20;
  uint64_t max_name_bytes = 4096;
  uint64_t max_central_directory_bytes = uint64_t{256} << 20;
};

// One member, from its central directory header (APPNOTE 4.3.12) and local header (4.3.7).
struct ZipEntry {
  std::string name;              // full member name, e.g. "mp_rank_00_model_states/data/3"
  uint64_t local_header_offset;  // absolute offset of the local file header
  uint64_t data_offset;          // absolute offset of the payload in the file
  uint64_t size;                 // payload bytes (stored: compressed == uncompressed)
  uint32_t crc32;                // from the central directory
};

class ZipReader {
 public:
  // Parses and validates the archive in `source` (see the file comment). DataLoss, Unimplemented,
  // or the source's I/O error.
  static absl::StatusOr<ZipReader> Open(std::shared_ptr<const ByteSource> source,
                                        ZipLimits limits = {});

  // Members in central-directory order.
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // The member called `name`, or nullptr. O(1).
  const ZipEntry* Find(absl::string_view name) const;
  // The payload of `entry` (one of entries()): a zero-copy slice when the source is mapped, else
  // a heap copy. Errors come from the source.
  absl::StatusOr<Buffer> Read(const ZipEntry& entry) const;
  // DataLoss "CRC mismatch" naming the member when the payload's CRC-32 differs from the central
  // directory's. Reads unmapped sources in bounded chunks.
  absl::Status VerifyCrc(const ZipEntry& entry) const;
  // VerifyCrc on every entry; the first error.
  absl::Status VerifyAll() const;
  const ByteSource& source() const { return *source_; }
  const std::shared_ptr<const ByteSource>& shared_source() const { return source_; }

 private:
  ZipReader(std::shared_ptr<const ByteSource> source, std::vector<ZipEntry> entries,
            absl::flat_hash_map<std::string, size_t> index)
      : source_(std::move(source)), entries_(std::move(entries)), index_(std::move(index)) {}

  std::shared_ptr<const ByteSource> source_;
  std::vector<ZipEntry> entries_;
  absl::flat_hash_map<std::string, size_t> index_;  // name → position in entries_
};

}  // namespace ucp::formats::zip
