#include "formats/zip/zip_writer.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "formats/base/checked_math.h"
#include "formats/base/crc32.h"
#include "formats/base/status.h"
#include "formats/zip/zip_format.h"

namespace ucp::formats::zip {
namespace {

namespace iz = ::ucp::internal_zip;

// miniz's "version made by" (3 = Unix, spec 3.0) and "version needed" (4.5 = ZIP64) in the ZIP64
// end record; every other version field torch writes is 0.
constexpr uint16_t kZip64MadeBy = 0x031e;
constexpr uint16_t kZip64Needed = 45;
// miniz writes no data descriptor (and clears flag bit 3) for an empty record.
uint16_t Flags(uint64_t size) {
  return size == 0 ? iz::kFlagUtf8 : iz::kFlagDataDescriptor | iz::kFlagUtf8;
}
// Records must end below this offset (a sanity bound far past any real checkpoint).
constexpr uint64_t kMaxArchiveBytes = uint64_t{1} << 62;
// The central directory is handed to the sink in pieces of about this size.
constexpr size_t kDirectoryFlushBytes = size_t{1} << 20;

// The local header of a record as torch 1.13 lays it out (inline_container.cc getPadding).
struct LocalLayout {
  bool large_size;            // size >= 0xFFFFFFFF
  bool large_offset;          // local header offset >= 0xFFFFFFFF
  uint64_t zip64_data_bytes;  // data bytes of the ZIP64 extra field (0: no field)
  uint64_t padding;           // 'Z' bytes in the FB field
  uint64_t header_bytes;      // local header + name + extra fields; the payload follows
  bool zip64() const { return large_size || large_offset; }
};

LocalLayout PlanLocalHeader(uint64_t offset, uint64_t name_size, uint64_t size) {
  LocalLayout l{};
  l.large_size = size >= iz::kMax32;
  l.large_offset = offset >= iz::kMax32;
  l.zip64_data_bytes = (l.large_size ? 16 : 0) + (l.large_offset ? 8 : 0);
  const uint64_t fixed = iz::kLocalHeaderBytes + name_size + iz::kExtraHeaderBytes +
                         (l.zip64() ? iz::kExtraHeaderBytes + l.zip64_data_bytes : 0);
  const uint64_t start_mod =
      (offset % kPayloadAlignment + fixed % kPayloadAlignment) % kPayloadAlignment;
  l.padding = (kPayloadAlignment - start_mod) % kPayloadAlignment;
  l.header_bytes = fixed + l.padding;
  return l;
}

// 4.3.7 local file header plus extra fields (4.5.3 ZIP64, then torch's FB padding).
void BuildLocalHeader(absl::string_view name, uint64_t offset, uint64_t size, const LocalLayout& l,
                      iz::RecordBuilder* b) {
  const uint64_t extra_bytes = (l.zip64() ? iz::kExtraHeaderBytes + l.zip64_data_bytes : 0) +
                               iz::kExtraHeaderBytes + l.padding;
  b->U32(iz::kLocalHeaderSignature).U16(0);                  // version needed
  b->U16(Flags(size)).U16(iz::kMethodStored).U16(0).U16(0);  // flags, method, time, date
  b->U32(0).U32(0).U32(0);                                   // CRC and sizes: in the descriptor
  b->U16(name.size()).U16(extra_bytes).Bytes(name);
  if (l.zip64()) {
    b->U16(iz::kZip64ExtraId).U16(l.zip64_data_bytes);
    if (l.large_size) b->U64(size).U64(0);  // miniz writes the compressed size before it knows it
    if (l.large_offset) b->U64(offset);
  }
  b->U16(iz::kTorchPaddingExtraId).U16(l.padding).Fill(l.padding, 'Z');
}

// 4.3.12 central directory file header with a 4.5.3 ZIP64 field when needed.
void BuildCentralHeader(absl::string_view name, uint64_t offset, uint64_t size, uint32_t crc32,
                        iz::RecordBuilder* b) {
  const bool large_size = size >= iz::kMax32;
  const bool large_offset = offset >= iz::kMax32;
  const uint64_t zip64_data_bytes = (large_size ? 16 : 0) + (large_offset ? 8 : 0);
  const uint64_t extra_bytes = zip64_data_bytes == 0 ? 0 : iz::kExtraHeaderBytes + zip64_data_bytes;
  b->U32(iz::kCentralHeaderSignature).U16(0).U16(0);         // made by, version needed
  b->U16(Flags(size)).U16(iz::kMethodStored).U16(0).U16(0);  // flags, method, time, date
  b->U32(crc32).U32(std::min(size, iz::kMax32)).U32(std::min(size, iz::kMax32));
  b->U16(name.size()).U16(extra_bytes).U16(0).U16(0).U16(0).U32(0);  // comment, disk, attributes
  b->U32(std::min(offset, iz::kMax32)).Bytes(name);
  if (extra_bytes != 0) {
    b->U16(iz::kZip64ExtraId).U16(zip64_data_bytes);
    if (large_size) b->U64(size).U64(size);
    if (large_offset) b->U64(offset);
  }
}

// 4.3.14 ZIP64 end record, 4.3.15 locator, 4.3.16 classic end record (no comment).
void BuildEndRecords(uint64_t entries, uint64_t directory_offset, uint64_t directory_size,
                     iz::RecordBuilder* b) {
  const uint64_t zip64_offset = directory_offset + directory_size;
  b->U32(iz::kZip64EndSignature).U64(iz::kZip64EndBytes - 12).U16(kZip64MadeBy).U16(kZip64Needed);
  b->U32(0).U32(0).U64(entries).U64(entries).U64(directory_size).U64(directory_offset);
  b->U32(iz::kZip64LocatorSignature).U32(0).U64(zip64_offset).U32(1);
  b->U32(iz::kEndSignature).U16(0).U16(0);
  b->U16(std::min(entries, iz::kMax16)).U16(std::min(entries, iz::kMax16));
  b->U32(std::min(directory_size, iz::kMax32)).U32(std::min(directory_offset, iz::kMax32)).U16(0);
}

}  // namespace

ZipWriter::ZipWriter(ByteSink* sink) : sink_(sink), cursor_(sink->Size()) {}

absl::Status ZipWriter::CheckOpen(absl::string_view what) const {
  if (failed_) {
    return absl::FailedPreconditionError(
        absl::StrCat(sink_->name(), ": ZipWriter::", what, " after an earlier write failed"));
  }
  if (finished_) {
    return absl::FailedPreconditionError(
        absl::StrCat(sink_->name(), ": ZipWriter::", what, " after Finish"));
  }
  return absl::OkStatus();
}

absl::Status ZipWriter::Write(absl::Span<const std::byte> bytes) {
  absl::Status status = sink_->Append(bytes);
  if (!status.ok()) {
    failed_ = true;
    return status;
  }
  cursor_ += bytes.size();
  return absl::OkStatus();
}

absl::Status ZipWriter::AddRecord(absl::string_view name, absl::Span<const std::byte> data) {
  UCP_RETURN_IF_ERROR(BeginRecord(name, data.size()));
  UCP_RETURN_IF_ERROR(AppendToRecord(data));
  return EndRecord();
}

absl::Status ZipWriter::BeginRecord(absl::string_view name, uint64_t size) {
  UCP_RETURN_IF_ERROR(CheckOpen("BeginRecord"));
  if (in_record_) {
    return absl::FailedPreconditionError(
        absl::StrCat(sink_->name(), ": BeginRecord('", absl::CEscape(name), "') while record '",
                     absl::CEscape(records_.back().name), "' is open"));
  }
  if (name.empty() || name.size() > iz::kMax16 || name.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(sink_->name(), ": record name '",
                                                   absl::CEscape(name),
                                                   "' must be 1 to 65535 bytes without NUL"));
  }
  if (names_.contains(name)) {
    return absl::AlreadyExistsError(
        absl::StrCat(sink_->name(), ": duplicate record name '", absl::CEscape(name), "'"));
  }
  const LocalLayout layout = PlanLocalHeader(cursor_, name.size(), size);
  const std::optional<uint64_t> end = CheckedAdd(cursor_ + layout.header_bytes, size);
  if (!end || *end > kMaxArchiveBytes) {
    return absl::InvalidArgumentError(absl::StrCat(sink_->name(), ": record '", absl::CEscape(name),
                                                   "' of ", size, " bytes is too large"));
  }
  iz::RecordBuilder header;
  BuildLocalHeader(name, cursor_, size, layout, &header);
  const uint64_t offset = cursor_;
  UCP_RETURN_IF_ERROR(Write(header.span()));
  records_.push_back(Record{std::string(name), offset, size, 0});
  names_.insert(records_.back().name);
  in_record_ = true;
  written_ = 0;
  return absl::OkStatus();
}

absl::Status ZipWriter::AppendToRecord(absl::Span<const std::byte> data) {
  return AppendPiece(data, std::nullopt);
}

absl::Status ZipWriter::AppendToRecord(absl::Span<const std::byte> data, uint32_t crc32) {
  return AppendPiece(data, crc32);
}

absl::Status ZipWriter::AppendPiece(absl::Span<const std::byte> data,
                                    std::optional<uint32_t> crc32) {
  UCP_RETURN_IF_ERROR(CheckOpen("AppendToRecord"));
  if (!in_record_) {
    return absl::FailedPreconditionError(
        absl::StrCat(sink_->name(), ": AppendToRecord with no open record"));
  }
  Record& record = records_.back();
  if (data.size() > record.size - written_) {
    return absl::InvalidArgumentError(absl::StrCat(
        sink_->name(), ": record '", absl::CEscape(record.name), "': appending ", data.size(),
        " bytes after ", written_, " exceeds the announced size of ", record.size));
  }
  record.crc32 =
      crc32 ? Crc32Combine(record.crc32, *crc32, data.size()) : Crc32(data, record.crc32);
  UCP_RETURN_IF_ERROR(Write(data));
  written_ += data.size();
  return absl::OkStatus();
}

absl::Status ZipWriter::EndRecord() {
  UCP_RETURN_IF_ERROR(CheckOpen("EndRecord"));
  if (!in_record_) {
    return absl::FailedPreconditionError(
        absl::StrCat(sink_->name(), ": EndRecord with no open record"));
  }
  const Record& record = records_.back();
  if (written_ != record.size) {
    return absl::InvalidArgumentError(absl::StrCat(sink_->name(), ": record '",
                                                   absl::CEscape(record.name), "': ", written_,
                                                   " bytes appended, ", record.size, " announced"));
  }
  in_record_ = false;
  if (record.size == 0) return absl::OkStatus();
  // 4.3.9 data descriptor; 8-byte sizes whenever the local header carried a ZIP64 field.
  iz::RecordBuilder descriptor;
  descriptor.U32(iz::kDataDescriptorSignature).U32(record.crc32);
  if (record.size >= iz::kMax32 || record.local_header_offset >= iz::kMax32) {
    descriptor.U64(record.size).U64(record.size);
  } else {
    descriptor.U32(record.size).U32(record.size);
  }
  return Write(descriptor.span());
}

absl::Status ZipWriter::Finish() {
  UCP_RETURN_IF_ERROR(CheckOpen("Finish"));
  if (in_record_) {
    return absl::FailedPreconditionError(absl::StrCat(sink_->name(), ": Finish while record '",
                                                      absl::CEscape(records_.back().name),
                                                      "' is open"));
  }
  const uint64_t directory_offset = cursor_;
  iz::RecordBuilder b;
  for (const Record& r : records_) {
    BuildCentralHeader(r.name, r.local_header_offset, r.size, r.crc32, &b);
    if (b.size() >= kDirectoryFlushBytes) {
      UCP_RETURN_IF_ERROR(Write(b.span()));
      b.Clear();
    }
  }
  const uint64_t directory_size = cursor_ + b.size() - directory_offset;
  BuildEndRecords(records_.size(), directory_offset, directory_size, &b);
  UCP_RETURN_IF_ERROR(Write(b.span()));
  finished_ = true;
  return absl::OkStatus();
}

uint64_t ZipWriter::NextPayloadOffset(absl::string_view name, uint64_t size) const {
  return cursor_ + PlanLocalHeader(cursor_, name.size(), size).header_bytes;
}

}  // namespace ucp::formats::zip
