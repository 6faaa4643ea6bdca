// Internal to formats/safetensors: a strict parser and an emitter for the JSON header (see
// safetensors_format.h for the schema).
//
// The parser accepts exactly the schema: a top-level object whose members are tensor entries
// {"dtype": str, "shape": [uint...], "data_offsets": [uint, uint]} and at most one
// "__metadata__": {str: str}. It never recurses (the schema is three levels deep), so hostile
// nesting is a plain syntax error, and it reports duplicate keys, which generic JSON libraries
// silently merge. It checks syntax and types only; offsets are validated by the reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "formats/base/dtype.h"

namespace ucp::internal_safetensors {

// One tensor entry as written in the header; offsets are relative to the byte buffer.
struct HeaderEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> dims;
  uint64_t begin = 0;
  uint64_t end = 0;
};

struct ParsedHeader {
  std::vector<HeaderEntry> entries;                           // header order
  std::vector<std::pair<std::string, std::string>> metadata;  // "__metadata__", header order
};

// The key reserved for free-form metadata.
inline constexpr absl::string_view kMetadataKey = "__metadata__";

// Parses header text (the N bytes after the length). Errors:
//   DataLoss       invalid UTF-8 or JSON, anything outside the schema, duplicate keys, a dtype name
//                  unknown to the spec, negative / fractional / oversized numbers, rank > kMaxRank;
//   Unimplemented  a dtype of the spec that ucp has no DType for (U16, U32, U64, C64, F4, ...).
// Messages give the byte position and, inside an entry, the tensor name.
absl::StatusOr<ParsedHeader> ParseHeaderJson(absl::string_view text);

// Compact JSON for `header` ("__metadata__" first, omitted when empty; entries in order), not
// padded. Strings must be valid UTF-8 (the caller checks).
std::string SerializeHeaderJson(const ParsedHeader& header);

// Appends `text` as a JSON string literal (quotes, escapes for '"', '\\' and control bytes).
void AppendJsonString(absl::string_view text, std::string& out);

// Strict UTF-8: no overlong forms, surrogates or code points above U+10FFFF.
bool IsValidUtf8(absl::string_view text);

// `text` in single quotes for an error message: control bytes as \xNN, cut after 100 bytes.
std::string QuoteForMessage(absl::string_view text);

// Little-endian u64 of the first 8 bytes of `bytes` (which must hold 8).
uint64_t LoadLittleEndian64(absl::Span<const std::byte> bytes);
// `value` as 8 little-endian bytes appended to `out`.
void AppendLittleEndian64(uint64_t value, std::string& out);

}  // namespace ucp::internal_safetensors
