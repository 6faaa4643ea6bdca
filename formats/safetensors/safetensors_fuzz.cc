// libFuzzer target for SafetensorsReader: any input must give a Status, never a crash, and an
// accepted file must let every tensor be read. Build with Clang (see CMakeLists.txt).
#include <cstddef>
#include <cstdint>

#include "formats/base/byte_source.h"
#include "formats/base/status.h"
#include "formats/safetensors/safetensors_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using ucp::formats::safetensors::SafetensorsReader;
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  auto source = ucp::MemorySource(ucp::Buffer::CopyOf(absl::Span<const std::byte>(bytes, size)));
  absl::StatusOr<SafetensorsReader> reader =
      SafetensorsReader::Open(source, {.max_header_bytes = 1 << 16});
  if (!reader.ok()) return 0;
  for (const auto& info : reader->tensors()) {
    UCP_CHECK(reader->Read(info).ok()) << "accepted file with an unreadable tensor";
  }
  return 0;
}
