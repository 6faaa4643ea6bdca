// ZipWriter: writes ZIP archives byte-for-byte the way torch 1.13's torch.save does (PyTorch's
// caffe2/serialize/inline_container.cc over miniz; deepspeed-formats.md §9.2), so that a
// checkpoint rewritten from the same records in the same order is identical to the original.
//
// Per record (APPNOTE 4.3.7-4.3.9), appended in order to the sink:
//   local file header: version needed 0, flags 0x0808 (data descriptor + UTF-8; 0x0800 for an
//     empty record, which gets no data descriptor), method 0 (stored),
//     time/date 0, CRC and sizes 0; the name; extra fields: a ZIP64 field (4.5.3) only when the
//     size or the header offset is >= 0xFFFFFFFF (uncompressed size, compressed size written as 0,
//     offset: each only when large), then torch's 'FB' field (id 0x4246, L bytes of 'Z', present
//     even when L = 0) so that the payload starts at a multiple of kPayloadAlignment (64);
//   the payload;
//   data descriptor: "PK\x07\x08", CRC-32, compressed and uncompressed size (4 bytes each, or 8
//     each when the local header carried a ZIP64 field).
// Finish() appends the central directory (4.3.12: real CRC and sizes, made-by/needed 0, a ZIP64
// field when a size or offset is >= 0xFFFFFFFF), the ZIP64 end record (4.3.14, always),
// its locator (4.3.15) and the classic end record (4.3.16, all-ones where a value does not fit).
//
// Errors: InvalidArgument (bad or oversized name, more or fewer bytes than announced),
// AlreadyExists (duplicate name), FailedPrecondition (call out of order, or after a sink error),
// and whatever the sink returns. After any sink error the writer refuses further calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "formats/base/byte_sink.h"

namespace ucp::formats::zip {

// torch's kFieldAlignment: every payload starts at a multiple of this many bytes.
inline constexpr uint64_t kPayloadAlignment = 64;

class ZipWriter {
 public:
  // Writes at the sink's current end (normally 0); does not own `sink`.
  explicit ZipWriter(ByteSink* sink);

  // One whole record: BeginRecord + AppendToRecord + EndRecord.
  absl::Status AddRecord(absl::string_view name, absl::Span<const std::byte> data);

  // Streaming form for large records: the size is announced up front (the local header depends
  // on it), the payload follows in any number of pieces, and the CRC is accumulated as it goes.
  absl::Status BeginRecord(absl::string_view name, uint64_t size);
  absl::Status AppendToRecord(absl::Span<const std::byte> data);
  // Like AppendToRecord when the caller already has crc32 == Crc32(data) (e.g. computed in
  // parallel): the writer combines it instead of re-reading the bytes.
  absl::Status AppendToRecord(absl::Span<const std::byte> data, uint32_t crc32);
  // InvalidArgument if fewer bytes than announced were appended (more is refused on append).
  absl::Status EndRecord();

  // Central directory, ZIP64 end record + locator, classic end record. Does NOT Commit the sink.
  absl::Status Finish();

  // The offset a record's payload would start at if it were begun now (between records), for
  // planners that pre-size files. `size` matters only from 0xFFFFFFFF bytes on (ZIP64 field).
  uint64_t NextPayloadOffset(absl::string_view name, uint64_t size = 0) const;

 private:
  struct Record {
    std::string name;
    uint64_t local_header_offset;
    uint64_t size;
    uint32_t crc32;
  };

  absl::Status CheckOpen(absl::string_view what) const;
  // Appends to the sink; on failure the writer is poisoned.
  absl::Status Write(absl::Span<const std::byte> bytes);
  absl::Status AppendPiece(absl::Span<const std::byte> data, std::optional<uint32_t> crc32);

  ByteSink* sink_;
  uint64_t cursor_;  // absolute offset of the next byte appended
  std::vector<Record> records_;
  absl::flat_hash_set<std::string> names_;
  bool in_record_ = false;
  uint64_t written_ = 0;  // payload bytes of the open record so far
  bool finished_ = false;
  bool failed_ = false;
};

}  // namespace ucp::formats::zip
