#include "formats/zip/zip_reader.h"

#include <algorithm>
#include <cstring>
#include <iterator>
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

using internal_zip::Load16;
using internal_zip::Load32;
using internal_zip::Load64;
namespace iz = ::ucp::internal_zip;

// Unmapped sources are checksummed through a buffer of at most this many bytes.
constexpr uint64_t kCrcChunkBytes = uint64_t{4} << 20;

// Where the central directory is, according to the end records.
struct Directory {
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t entries = 0;
  uint64_t end_records_offset = 0;  // first byte of the ZIP64 record, or of the classic record
};

// Member names come from the file: escape them before they reach a message.
std::string Quoted(absl::string_view name) { return absl::StrCat("'", absl::CEscape(name), "'"); }

absl::Status Corrupt(const ByteSource& src, absl::string_view what) {
  return absl::DataLossError(absl::StrCat(src.name(), ": ", what));
}
absl::Status CorruptMember(const ByteSource& src, absl::string_view name, absl::string_view what) {
  return absl::DataLossError(absl::StrCat(src.name(), ": member ", Quoted(name), ": ", what));
}
absl::Status MultiDisk(const ByteSource& src) {
  return absl::UnimplementedError(
      absl::StrCat(src.name(), ": multi-disk archives are not supported"));
}

// Offset of the classic end record (APPNOTE 4.3.16): the last signature whose comment length
// reaches exactly to the end of the file.
absl::StatusOr<uint64_t> FindEndRecord(const ByteSource& src) {
  const uint64_t size = src.Size();
  if (size < iz::kEndBytes) {
    return Corrupt(
        src, absl::StrCat("end of central directory record not found (file is ", size, " bytes)"));
  }
  const uint64_t tail_size = std::min(size, iz::kEndBytes + iz::kMaxCommentBytes);
  std::vector<std::byte> tail(tail_size);
  UCP_RETURN_IF_ERROR(src.ReadAt(size - tail_size, absl::MakeSpan(tail)));
  for (uint64_t pos = tail_size - iz::kEndBytes + 1; pos-- > 0;) {
    if (Load32(&tail[pos]) == iz::kEndSignature &&
        pos + iz::kEndBytes + Load16(&tail[pos + 20]) == tail_size) {
      return size - tail_size + pos;
    }
  }
  return Corrupt(src, "end of central directory record not found");
}

// Fills `dir` from the ZIP64 record (4.3.14) found through the locator at `locator_offset`
// (4.3.15), and checks that the classic record's non-sentinel fields agree with it.
absl::Status ReadZip64EndRecord(const ByteSource& src, uint64_t locator_offset,
                                const std::byte* locator, const std::byte* classic,
                                Directory* dir) {
  const uint64_t record_offset = Load64(locator + 8);
  if (Load32(locator + 4) != 0 || Load32(locator + 16) > 1) return MultiDisk(src);
  if (!RangeInside(record_offset, iz::kZip64EndBytes, locator_offset)) {
    return Corrupt(src, absl::StrCat("ZIP64 end of central directory record offset ", record_offset,
                                     " is not before its locator at ", locator_offset));
  }
  std::byte r[iz::kZip64EndBytes];
  UCP_RETURN_IF_ERROR(src.ReadAt(record_offset, absl::MakeSpan(r)));
  const uint64_t rest = Load64(r + 4);
  if (Load32(r) != iz::kZip64EndSignature || rest < iz::kZip64EndBytes - 12 ||
      rest != locator_offset - record_offset - 12) {
    return Corrupt(
        src, absl::StrCat("no valid ZIP64 end of central directory record at ", record_offset));
  }
  if (Load32(r + 16) != 0 || Load32(r + 20) != 0) return MultiDisk(src);
  dir->entries = Load64(r + 32);
  dir->size = Load64(r + 40);
  dir->offset = Load64(r + 48);
  dir->end_records_offset = record_offset;
  // Entries on this disk, then the classic record's two counts (0xFFFF: "see the ZIP64 record").
  const uint64_t counts[] = {Load64(r + 24), Load16(classic + 8), Load16(classic + 10)};
  for (size_t i = 0; i < std::size(counts); ++i) {
    if (counts[i] != dir->entries && !(i > 0 && counts[i] == iz::kMax16)) {
      return Corrupt(src, absl::StrCat("entry counts disagree between the end records (",
                                       dir->entries, " vs ", counts[i], ")"));
    }
  }
  const uint64_t classic_size = Load32(classic + 12);
  const uint64_t classic_offset = Load32(classic + 16);
  if ((classic_size != iz::kMax32 && classic_size != dir->size) ||
      (classic_offset != iz::kMax32 && classic_offset != dir->offset)) {
    return Corrupt(src, "central directory size or offset disagrees between the end records");
  }
  return absl::OkStatus();
}

// The central directory's place and entry count, from the end records.
absl::StatusOr<Directory> ReadEndRecords(const ByteSource& src) {
  UCP_ASSIGN_OR_RETURN(const uint64_t end_offset, FindEndRecord(src));
  std::byte e[iz::kEndBytes];
  UCP_RETURN_IF_ERROR(src.ReadAt(end_offset, absl::MakeSpan(e)));
  const uint16_t disk = Load16(e + 4);
  const uint16_t directory_disk = Load16(e + 6);
  if (end_offset >= iz::kZip64LocatorBytes) {
    const uint64_t locator_offset = end_offset - iz::kZip64LocatorBytes;
    std::byte locator[iz::kZip64LocatorBytes];
    UCP_RETURN_IF_ERROR(src.ReadAt(locator_offset, absl::MakeSpan(locator)));
    if (Load32(locator) == iz::kZip64LocatorSignature) {
      if ((disk != 0 && disk != iz::kMax16) ||
          (directory_disk != 0 && directory_disk != iz::kMax16)) {
        return MultiDisk(src);
      }
      Directory dir;
      UCP_RETURN_IF_ERROR(ReadZip64EndRecord(src, locator_offset, locator, e, &dir));
      return dir;
    }
  }
  if (disk != 0 || directory_disk != 0) return MultiDisk(src);
  Directory dir{Load32(e + 16), Load32(e + 12), Load16(e + 10), end_offset};
  if (Load16(e + 8) != dir.entries) {
    return Corrupt(src, absl::StrCat("entry counts disagree in the end record (", Load16(e + 8),
                                     " vs ", dir.entries, ")"));
  }
  return dir;
}

// The central directory must fit the limits and end exactly where the end records begin.
absl::Status CheckDirectoryBounds(const ByteSource& src, const Directory& dir,
                                  const ZipLimits& limits) {
  if (dir.entries > limits.max_entries) {
    return Corrupt(src, absl::StrCat("archive claims ", dir.entries,
                                     " entries, more than the limit of ", limits.max_entries));
  }
  if (dir.size > limits.max_central_directory_bytes) {
    return Corrupt(
        src, absl::StrCat("central directory of ", dir.size, " bytes is larger than the limit of ",
                          limits.max_central_directory_bytes));
  }
  const std::optional<uint64_t> end = CheckedAdd(dir.offset, dir.size);
  if (!end || *end > src.Size()) {
    return Corrupt(src,
                   absl::StrCat("central directory at ", dir.offset, " (", dir.size,
                                " bytes) is past the end of the file (", src.Size(), " bytes)"));
  }
  if (*end != dir.end_records_offset) {
    return Corrupt(src, absl::StrCat("central directory [", dir.offset, ", ", *end,
                                     ") does not end where the end records begin (",
                                     dir.end_records_offset, ")"));
  }
  const std::optional<uint64_t> minimum = CheckedMul(dir.entries, iz::kCentralHeaderBytes);
  if (!minimum || *minimum > dir.size) {
    return Corrupt(src, absl::StrCat("central directory of ", dir.size, " bytes cannot hold ",
                                     dir.entries, " entries"));
  }
  return absl::OkStatus();
}

// The 4.5.3 ZIP64 extended information field, if any, replaces the all-ones fields.
absl::Status ApplyZip64Extra(const ByteSource& src, absl::string_view name,
                             absl::Span<const std::byte> extra, uint64_t* size,
                             uint64_t* compressed_size, uint64_t* local_header_offset,
                             uint32_t* disk) {
  while (extra.size() >= iz::kExtraHeaderBytes) {
    const uint16_t id = Load16(extra.data());
    const uint16_t length = Load16(extra.data() + 2);
    extra.remove_prefix(iz::kExtraHeaderBytes);
    if (length > extra.size()) return CorruptMember(src, name, "extra field overruns its header");
    absl::Span<const std::byte> field = extra.first(length);
    extra.remove_prefix(length);
    if (id != iz::kZip64ExtraId) continue;
    for (uint64_t* value : {size, compressed_size, local_header_offset}) {
      if (*value != iz::kMax32) continue;
      if (field.size() < 8) return CorruptMember(src, name, "ZIP64 extra field is too short");
      *value = Load64(field.data());
      field.remove_prefix(8);
    }
    if (*disk == iz::kMax16) {
      if (field.size() < 4) return CorruptMember(src, name, "ZIP64 extra field is too short");
      *disk = Load32(field.data());
    }
    return absl::OkStatus();
  }
  return absl::OkStatus();
}

// Parses central directory header #`index` (4.3.12) at the front of `bytes`; sets `consumed`.
absl::Status ParseCentralEntry(const ByteSource& src, absl::Span<const std::byte> bytes,
                               uint64_t index, const ZipLimits& limits, ZipEntry* entry,
                               uint64_t* consumed) {
  const std::byte* h = bytes.data();
  if (bytes.size() < iz::kCentralHeaderBytes || Load32(h) != iz::kCentralHeaderSignature) {
    return Corrupt(src, absl::StrCat("central directory entry #", index,
                                     " is truncated or has a bad signature"));
  }
  const uint64_t name_size = Load16(h + 28);
  *consumed = iz::kCentralHeaderBytes + name_size + Load16(h + 30) + Load16(h + 32);
  if (*consumed > bytes.size()) {
    return Corrupt(src, absl::StrCat("central directory entry #", index,
                                     " runs past the end of the central directory"));
  }
  if (name_size == 0 || name_size > limits.max_name_bytes) {
    return Corrupt(src, absl::StrCat("central directory entry #", index, " has a name of ",
                                     name_size, " bytes (limit ", limits.max_name_bytes, ")"));
  }
  entry->name.assign(reinterpret_cast<const char*>(h + iz::kCentralHeaderBytes), name_size);
  const std::string& name = entry->name;
  if (name.find('\0') != std::string::npos) return CorruptMember(src, name, "name contains NUL");
  const uint16_t flags = Load16(h + 8);
  const uint16_t method = Load16(h + 10);
  if (flags & (iz::kFlagEncrypted | iz::kFlagStrongEncryption)) {
    return absl::UnimplementedError(
        absl::StrCat(src.name(), ": encrypted member ", Quoted(name), " not supported"));
  }
  if (method != iz::kMethodStored) {
    return absl::UnimplementedError(absl::StrCat(src.name(), ": compressed member ", Quoted(name),
                                                 " (method ", method, ") not supported"));
  }
  entry->crc32 = Load32(h + 16);
  uint64_t compressed_size = Load32(h + 20);
  entry->size = Load32(h + 24);
  entry->local_header_offset = Load32(h + 42);
  uint32_t disk = Load16(h + 34);
  UCP_RETURN_IF_ERROR(
      ApplyZip64Extra(src, name, bytes.subspan(iz::kCentralHeaderBytes + name_size, Load16(h + 30)),
                      &entry->size, &compressed_size, &entry->local_header_offset, &disk));
  if (disk != 0) return CorruptMember(src, name, absl::StrCat("starts on disk ", disk));
  if (compressed_size != entry->size) {
    return CorruptMember(src, name,
                         absl::StrCat("stored member has compressed size ", compressed_size,
                                      " but size ", entry->size));
  }
  return absl::OkStatus();
}

absl::Status ParseCentralDirectory(const ByteSource& src, const Buffer& directory,
                                   const Directory& dir, const ZipLimits& limits,
                                   std::vector<ZipEntry>* entries,
                                   absl::flat_hash_map<std::string, size_t>* index) {
  entries->reserve(dir.entries);  // bounded: dir.entries * 46 <= dir.size <= the limit
  index->reserve(dir.entries);
  absl::Span<const std::byte> rest = directory.span();
  for (uint64_t i = 0; i < dir.entries; ++i) {
    ZipEntry entry{};
    uint64_t consumed = 0;
    UCP_RETURN_IF_ERROR(ParseCentralEntry(src, rest, i, limits, &entry, &consumed));
    rest.remove_prefix(consumed);
    if (!index->emplace(entry.name, entries->size()).second) {
      return CorruptMember(src, entry.name, "duplicate member name");
    }
    entries->push_back(std::move(entry));
  }
  if (!rest.empty()) {
    return Corrupt(src, absl::StrCat("central directory has ", rest.size(), " bytes after the ",
                                     dir.entries, " entries the end record declares"));
  }
  return absl::OkStatus();
}

// Checks the local header (4.3.7) of `entry` against its central entry and sets data_offset.
absl::Status ReadLocalHeader(const ByteSource& src, const Directory& dir, std::string* scratch,
                             ZipEntry* entry) {
  const std::string& name = entry->name;
  const uint64_t header_size = iz::kLocalHeaderBytes + name.size();
  if (!RangeInside(entry->local_header_offset, header_size, dir.offset)) {
    return CorruptMember(src, name,
                         absl::StrCat("local header at ", entry->local_header_offset,
                                      " is not before the central directory at ", dir.offset));
  }
  scratch->resize(header_size);
  auto* h = reinterpret_cast<std::byte*>(scratch->data());
  UCP_RETURN_IF_ERROR(src.ReadAt(entry->local_header_offset, {h, header_size}));
  if (Load32(h) != iz::kLocalHeaderSignature) {
    return CorruptMember(src, name,
                         absl::StrCat("no local header signature at ", entry->local_header_offset));
  }
  if (Load16(h + 26) != name.size() ||
      std::memcmp(h + iz::kLocalHeaderBytes, name.data(), name.size()) != 0) {
    return CorruptMember(src, name, "local header name differs from the central directory");
  }
  if (Load16(h + 8) != iz::kMethodStored ||
      (Load16(h + 6) & (iz::kFlagEncrypted | iz::kFlagStrongEncryption))) {
    return CorruptMember(src, name,
                         "local header method or flags differ from the central directory");
  }
  entry->data_offset = entry->local_header_offset + header_size + Load16(h + 28);
  const std::optional<uint64_t> end = CheckedAdd(entry->data_offset, entry->size);
  if (!end || *end > src.Size()) {
    return CorruptMember(src, name,
                         absl::StrCat("payload of ", entry->size, " bytes at ", entry->data_offset,
                                      " is past the end of the file (", src.Size(), " bytes)"));
  }
  if (*end > dir.offset) {
    return CorruptMember(src, name,
                         absl::StrCat("payload of ", entry->size, " bytes at ", entry->data_offset,
                                      " runs into the central directory at ", dir.offset));
  }
  return absl::OkStatus();
}

// No two members may share bytes: [local header, end of payload) ranges are disjoint.
absl::Status CheckNoOverlap(const ByteSource& src, const std::vector<ZipEntry>& entries) {
  std::vector<const ZipEntry*> order;
  order.reserve(entries.size());
  for (const ZipEntry& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const ZipEntry* a, const ZipEntry* b) {
    return a->local_header_offset < b->local_header_offset;
  });
  for (size_t i = 1; i < order.size(); ++i) {
    const ZipEntry& prev = *order[i - 1];
    const ZipEntry& next = *order[i];
    if (next.local_header_offset < prev.data_offset + prev.size) {
      return Corrupt(
          src, absl::StrCat("members ", Quoted(prev.name), " and ", Quoted(next.name), " overlap (",
                            prev.local_header_offset, "..", prev.data_offset + prev.size, " and ",
                            next.local_header_offset, "..)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ZipReader> ZipReader::Open(std::shared_ptr<const ByteSource> source,
                                          ZipLimits limits) {
  if (source == nullptr) return absl::InvalidArgumentError("ZipReader::Open: null source");
  const ByteSource& src = *source;
  UCP_ASSIGN_OR_RETURN(const Directory dir, ReadEndRecords(src));
  UCP_RETURN_IF_ERROR(CheckDirectoryBounds(src, dir, limits));
  UCP_ASSIGN_OR_RETURN(const Buffer directory, src.ReadBuffer(dir.offset, dir.size));
  std::vector<ZipEntry> entries;
  absl::flat_hash_map<std::string, size_t> index;
  UCP_RETURN_IF_ERROR(ParseCentralDirectory(src, directory, dir, limits, &entries, &index));
  std::string scratch;
  for (ZipEntry& entry : entries) UCP_RETURN_IF_ERROR(ReadLocalHeader(src, dir, &scratch, &entry));
  UCP_RETURN_IF_ERROR(CheckNoOverlap(src, entries));
  return ZipReader(std::move(source), std::move(entries), std::move(index));
}

const ZipEntry* ZipReader::Find(absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

absl::StatusOr<Buffer> ZipReader::Read(const ZipEntry& entry) const {
  return source_->ReadBuffer(entry.data_offset, entry.size);
}

absl::Status ZipReader::VerifyCrc(const ZipEntry& entry) const {
  uint32_t crc = 0;
  if (std::optional<Buffer> mapped = source_->Map()) {
    if (!RangeInside(entry.data_offset, entry.size, mapped->size())) {
      return CorruptMember(*source_, entry.name, "payload is outside the file");
    }
    crc = Crc32(mapped->span().subspan(entry.data_offset, entry.size));
  } else {
    std::vector<std::byte> chunk(std::min(entry.size, kCrcChunkBytes));
    for (uint64_t done = 0; done < entry.size;) {
      const uint64_t n = std::min(entry.size - done, kCrcChunkBytes);
      UCP_RETURN_IF_ERROR(source_->ReadAt(entry.data_offset + done, {chunk.data(), n}));
      crc = Crc32(absl::MakeConstSpan(chunk.data(), n), crc);
      done += n;
    }
  }
  if (crc != entry.crc32) {
    return CorruptMember(
        *source_, entry.name,
        absl::StrCat("CRC mismatch (central directory 0x", absl::Hex(entry.crc32, absl::kZeroPad8),
                     ", payload 0x", absl::Hex(crc, absl::kZeroPad8), ")"));
  }
  return absl::OkStatus();
}

absl::Status ZipReader::VerifyAll() const {
  for (const ZipEntry& entry : entries_) UCP_RETURN_IF_ERROR(VerifyCrc(entry));
  return absl::OkStatus();
}

}  // namespace ucp::formats::zip
