#include "formats/safetensors/safetensors_writer.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "formats/base/checked_math.h"
#include "formats/base/status.h"
#include "formats/safetensors/header_json.h"

namespace ucp::formats::safetensors {
namespace {

using internal_safetensors::HeaderEntry;
using internal_safetensors::IsValidUtf8;
using internal_safetensors::ParsedHeader;
using internal_safetensors::QuoteForMessage;

absl::Status CheckName(absl::string_view name, absl::flat_hash_set<std::string>& seen) {
  if (name == internal_safetensors::kMetadataKey) {
    return absl::InvalidArgumentError("tensor name \"__metadata__\" is reserved by the format");
  }
  if (!IsValidUtf8(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor name ", QuoteForMessage(name), " is not valid UTF-8"));
  }
  if (!seen.insert(std::string(name)).second) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor name ", QuoteForMessage(name), " appears twice"));
  }
  return absl::OkStatus();
}

absl::Status CheckMetadata(absl::Span<const std::pair<std::string, std::string>> metadata) {
  absl::flat_hash_set<absl::string_view> keys;
  for (const auto& [key, value] : metadata) {
    if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("metadata entry ", QuoteForMessage(key), " is not valid UTF-8"));
    }
    if (!keys.insert(key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("metadata key ", QuoteForMessage(key), " appears twice"));
    }
  }
  return absl::OkStatus();
}

// The header JSON padded with spaces so that 8 + its length is a multiple of 8.
std::string PaddedHeader(const ParsedHeader& header) {
  std::string json = internal_safetensors::SerializeHeaderJson(header);
  json.append((8 - json.size() % 8) % 8, ' ');
  return json;
}

}  // namespace

absl::StatusOr<PlannedFile> PlanFile(
    absl::Span<const TensorSpec> tensors,
    absl::Span<const std::pair<std::string, std::string>> metadata) {
  UCP_RETURN_IF_ERROR(CheckMetadata(metadata));
  ParsedHeader header;
  header.metadata.assign(metadata.begin(), metadata.end());
  header.entries.reserve(tensors.size());
  absl::flat_hash_set<std::string> names;
  uint64_t buffer_size = 0;
  for (const auto& [name, dtype, shape] : tensors) {
    UCP_RETURN_IF_ERROR(CheckName(name, names));
    absl::StatusOr<int64_t> num_bytes = shape.NumBytes(dtype);
    if (!num_bytes.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", QuoteForMessage(name), ": ", num_bytes.status().message()));
    }
    std::optional<uint64_t> end = CheckedAdd(buffer_size, static_cast<uint64_t>(*num_bytes));
    if (!end) return absl::InvalidArgumentError("total tensor size overflows 64 bits");
    header.entries.push_back(
        HeaderEntry{name, dtype, std::vector<int64_t>(shape.dims().begin(), shape.dims().end()),
                    buffer_size, *end});
    buffer_size = *end;
  }

  PlannedFile plan;
  const std::string json = PaddedHeader(header);
  if (json.size() > kDefaultMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("header of ", json.size(),
                                                   " bytes exceeds the limit of ",
                                                   kDefaultMaxHeaderBytes, " that readers accept"));
  }
  internal_safetensors::AppendLittleEndian64(json.size(), plan.header_bytes);
  plan.header_bytes += json;
  const uint64_t buffer_start = plan.header_bytes.size();
  std::optional<uint64_t> total = CheckedAdd(buffer_start, buffer_size);
  if (!total) return absl::InvalidArgumentError("total file size overflows 64 bits");
  plan.total_size = *total;
  plan.tensors.reserve(header.entries.size());
  for (size_t i = 0; i < header.entries.size(); ++i) {
    HeaderEntry& entry = header.entries[i];
    plan.tensors.push_back(TensorInfo{std::move(entry.name), entry.dtype, std::get<2>(tensors[i]),
                                      buffer_start + entry.begin, buffer_start + entry.end});
  }
  return plan;
}

absl::Status Write(ByteSink& sink, absl::Span<const WriteTensor> tensors,
                   absl::Span<const std::pair<std::string, std::string>> metadata) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const WriteTensor& tensor : tensors) {
    if (!tensor.view.IsContiguous()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", QuoteForMessage(tensor.name), ": view is not contiguous"));
    }
    specs.emplace_back(tensor.name, tensor.view.dtype, tensor.view.shape);
  }
  UCP_ASSIGN_OR_RETURN(PlannedFile plan, PlanFile(specs, metadata));
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].view.data == nullptr && plan.tensors[i].end > plan.tensors[i].begin) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", QuoteForMessage(tensors[i].name), ": view has no data"));
    }
  }

  const std::string context = absl::StrCat("writing ", sink.name());
  UCP_RETURN_IF_ERROR_CTX(sink.Append(plan.header_bytes), context);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& info = plan.tensors[i];
    if (info.end == info.begin) continue;
    absl::Span<const std::byte> bytes(tensors[i].view.data, info.end - info.begin);
    UCP_RETURN_IF_ERROR_CTX(sink.Append(bytes),
                            absl::StrCat(context, ": tensor ", QuoteForMessage(info.name)));
  }
  return absl::OkStatus();
}

}  // namespace ucp::formats::safetensors
