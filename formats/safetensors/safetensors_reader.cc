#include "formats/safetensors/safetensors_reader.h"

#include <algorithm>
#include <array>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "formats/base/checked_math.h"
#include "formats/base/status.h"
#include "formats/safetensors/header_json.h"

namespace ucp::formats::safetensors {
namespace {

using internal_safetensors::HeaderEntry;
using internal_safetensors::ParsedHeader;
using internal_safetensors::QuoteForMessage;

std::string TensorContext(absl::string_view name) {
  return absl::StrCat("tensor ", QuoteForMessage(name));
}

std::string OffsetsText(const HeaderEntry& entry) {
  return absl::StrCat("data_offsets [", entry.begin, ", ", entry.end, "]");
}

// Checks one entry on its own: its size, and that its offsets are ordered and inside the buffer.
absl::Status CheckEntry(const HeaderEntry& entry, uint64_t buffer_size) {
  const Shape shape(entry.dims);
  absl::StatusOr<int64_t> num_bytes = shape.NumBytes(entry.dtype);
  if (!num_bytes.ok()) return num_bytes.status();
  if (entry.end < entry.begin) {
    return absl::DataLossError(absl::StrCat(OffsetsText(entry), " are reversed"));
  }
  if (entry.end > buffer_size) {
    return absl::DataLossError(absl::StrCat(OffsetsText(entry), " end past the ", buffer_size,
                                            "-byte data buffer (truncated file?)"));
  }
  if (entry.end - entry.begin != static_cast<uint64_t>(*num_bytes)) {
    return absl::DataLossError(absl::StrCat(OffsetsText(entry), " span ", entry.end - entry.begin,
                                            " bytes but ", SafetensorsName(entry.dtype), " ",
                                            shape.ToString(), " needs ", *num_bytes));
  }
  return absl::OkStatus();
}

// Checks that the entries tile [0, buffer_size) exactly and returns them in offset order with
// absolute offsets (the buffer starts at `buffer_start`).
absl::StatusOr<std::vector<TensorInfo>> LayOut(std::vector<HeaderEntry> entries,
                                               uint64_t buffer_start, uint64_t buffer_size) {
  for (const HeaderEntry& entry : entries) {
    UCP_RETURN_IF_ERROR_CTX(CheckEntry(entry, buffer_size), TensorContext(entry.name));
  }
  std::stable_sort(entries.begin(), entries.end(), [](const HeaderEntry& a, const HeaderEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;  // the buffer is indexed up to here
  const HeaderEntry* previous = nullptr;
  for (const HeaderEntry& entry : entries) {
    if (entry.begin > covered) {
      return absl::DataLossError(absl::StrCat(TensorContext(entry.name), ": ", OffsetsText(entry),
                                              " leave a hole: buffer bytes [", covered, ", ",
                                              entry.begin, ") belong to no tensor"));
    }
    if (entry.begin < covered) {
      return absl::DataLossError(absl::StrCat(TensorContext(entry.name), ": ", OffsetsText(entry),
                                              " overlap tensor ", QuoteForMessage(previous->name),
                                              " (", OffsetsText(*previous), ")"));
    }
    covered = entry.end;
    previous = &entry;
  }
  if (covered != buffer_size) {
    return absl::DataLossError(absl::StrCat("the tensors cover ", covered, " bytes of the ",
                                            buffer_size,
                                            "-byte data buffer: the rest belongs to no tensor"));
  }
  std::vector<TensorInfo> tensors;
  tensors.reserve(entries.size());
  for (HeaderEntry& entry : entries) {
    // Cannot overflow: buffer_start + buffer_size is the file size.
    tensors.push_back(TensorInfo{std::move(entry.name), entry.dtype, Shape(std::move(entry.dims)),
                                 buffer_start + entry.begin, buffer_start + entry.end});
  }
  return tensors;
}

// Reads the header length and the header text; returns the text and the buffer's start.
absl::StatusOr<std::pair<Buffer, uint64_t>> ReadHeaderText(const ByteSource& source,
                                                           const ReadOptions& options) {
  const uint64_t file_size = source.Size();
  if (file_size < kHeaderLengthBytes) {
    return absl::DataLossError(
        absl::StrCat("file of ", file_size, " bytes is too short for the 8-byte header length"));
  }
  std::array<std::byte, kHeaderLengthBytes> length_bytes;
  UCP_RETURN_IF_ERROR(source.ReadAt(0, absl::MakeSpan(length_bytes)));
  const uint64_t header_length = internal_safetensors::LoadLittleEndian64(length_bytes);
  if (header_length > options.max_header_bytes) {
    return absl::DataLossError(absl::StrCat("header length ", header_length,
                                            " exceeds the limit of ", options.max_header_bytes,
                                            " bytes"));
  }
  if (header_length > file_size - kHeaderLengthBytes) {
    return absl::DataLossError(absl::StrCat("header length ", header_length, " exceeds the ",
                                            file_size - kHeaderLengthBytes,
                                            " bytes after the length field (truncated file?)"));
  }
  UCP_ASSIGN_OR_RETURN(Buffer text, source.ReadBuffer(kHeaderLengthBytes, header_length));
  return std::make_pair(std::move(text), kHeaderLengthBytes + header_length);
}

}  // namespace

absl::StatusOr<SafetensorsReader> SafetensorsReader::Open(std::shared_ptr<const ByteSource> source,
                                                          ReadOptions options) {
  if (source == nullptr) return absl::InvalidArgumentError("SafetensorsReader::Open: null source");
  absl::StatusOr<std::pair<Buffer, uint64_t>> header = ReadHeaderText(*source, options);
  if (!header.ok()) return WithContext(header.status(), source->name());
  const uint64_t buffer_start = header->second;

  absl::StatusOr<ParsedHeader> parsed =
      internal_safetensors::ParseHeaderJson(header->first.AsStringView());
  if (!parsed.ok()) return WithContext(parsed.status(), source->name());
  absl::StatusOr<std::vector<TensorInfo>> tensors =
      LayOut(std::move(parsed->entries), buffer_start, source->Size() - buffer_start);
  if (!tensors.ok()) return WithContext(tensors.status(), source->name());

  SafetensorsReader reader;
  reader.source_ = std::move(source);
  reader.tensors_ = *std::move(tensors);
  reader.metadata_ = std::move(parsed->metadata);
  reader.index_.reserve(reader.tensors_.size());
  for (size_t i = 0; i < reader.tensors_.size(); ++i) {
    reader.index_.emplace(reader.tensors_[i].name, i);
  }
  return reader;
}

const TensorInfo* SafetensorsReader::Find(absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<SharedTensor> SafetensorsReader::Read(const TensorInfo& info) const {
  const std::string context = absl::StrCat(source_->name(), ": ", TensorContext(info.name));
  absl::StatusOr<int64_t> num_bytes = info.shape.NumBytes(info.dtype);
  if (!num_bytes.ok() || info.end < info.begin ||
      info.end - info.begin != static_cast<uint64_t>(*num_bytes) || info.end > source_->Size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": TensorInfo does not describe bytes of this file"));
  }
  absl::StatusOr<Buffer> bytes = source_->ReadBuffer(info.begin, info.end - info.begin);
  if (!bytes.ok()) return WithContext(bytes.status(), context);
  const auto address = reinterpret_cast<uintptr_t>(bytes->data());
  if (!bytes->empty() && address % static_cast<uintptr_t>(DTypeSize(info.dtype)) != 0) {
    *bytes = Buffer::CopyOf(bytes->span());  // heap memory is aligned for every dtype
  }
  return SharedTensor::Contiguous(info.dtype, info.shape, *bytes);
}

absl::StatusOr<SharedTensor> SafetensorsReader::Read(absl::string_view name) const {
  const TensorInfo* info = Find(name);
  if (info == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(source_->name(), ": no tensor ", QuoteForMessage(name)));
  }
  return Read(*info);
}

}  // namespace ucp::formats::safetensors
