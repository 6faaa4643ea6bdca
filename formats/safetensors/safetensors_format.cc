#include "formats/safetensors/safetensors_format.h"

#include "formats/safetensors/header_json.h"

namespace ucp::formats::safetensors {

bool LooksLikeSafetensors(absl::Span<const std::byte> first_bytes, uint64_t file_size) {
  constexpr uint64_t kSmallestHeader = 2;  // "{}"
  if (first_bytes.size() < kHeaderLengthBytes + 1 ||
      file_size < kHeaderLengthBytes + kSmallestHeader) {
    return false;
  }
  const uint64_t header_length = internal_safetensors::LoadLittleEndian64(first_bytes);
  if (header_length < kSmallestHeader || header_length > kDefaultMaxHeaderBytes ||
      header_length > file_size - kHeaderLengthBytes) {
    return false;
  }
  if (first_bytes[8] != std::byte{'{'}) return false;
  if (first_bytes.size() == kHeaderLengthBytes + 1) return true;
  // After '{' comes a key, the closing brace or whitespace.
  const auto next = std::to_integer<char>(first_bytes[9]);
  return next == '"' || next == '}' || next == ' ' || next == '\t' || next == '\n' || next == '\r';
}

}  // namespace ucp::formats::safetensors
