// libFuzzer target for ZipReader: any input must give a Status, never a crash, and an accepted
// archive must let every member be read and checksummed. Build with Clang (see CMakeLists.txt);
// seed the corpus with fixtures/deepspeed/**/*.pt.
#include <cstddef>
#include <cstdint>

#include "formats/base/byte_source.h"
#include "formats/base/status.h"
#include "formats/zip/zip_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using ucp::formats::zip::ZipReader;
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  auto source = ucp::MemorySource(ucp::Buffer::CopyOf(absl::Span<const std::byte>(bytes, size)));
  absl::StatusOr<ZipReader> reader = ZipReader::Open(source, {.max_entries = 1 << 12});
  if (!reader.ok()) return 0;
  for (const auto& entry : reader->entries()) {
    UCP_CHECK(reader->Read(entry).ok()) << "accepted archive with an unreadable member";
    (void)reader->VerifyCrc(entry);
  }
  return 0;
}
