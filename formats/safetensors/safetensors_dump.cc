// Lists a safetensors file through SafetensorsReader, for safetensors_interop_test.py:
//
//   safetensors_dump FILE
//
// prints "meta\t<key>\t<value>" per metadata entry, then "tensor\t<name>\t<DTYPE>\t<d0,d1,..>\t
// <crc32 of the bytes, 8 hex digits>" per tensor in offset order. On error prints "error: ..." to
// stderr and exits 1.
#include <cinttypes>
#include <cstdio>
#include <string>

#include "absl/strings/str_join.h"
#include "formats/base/crc32.h"
#include "formats/base/status.h"
#include "formats/safetensors/safetensors_reader.h"

namespace ucp::formats::safetensors {
namespace {

absl::Status Dump(const std::string& path) {
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<ByteSource> source, OpenFileSource(path));
  UCP_ASSIGN_OR_RETURN(SafetensorsReader reader, SafetensorsReader::Open(source));
  for (const auto& [key, value] : reader.metadata()) {
    std::printf("meta\t%s\t%s\n", key.c_str(), value.c_str());
  }
  for (const TensorInfo& info : reader.tensors()) {
    UCP_ASSIGN_OR_RETURN(SharedTensor tensor, reader.Read(info));
    const uint32_t crc = Crc32({tensor.view.data, info.end - info.begin});
    std::printf("tensor\t%s\t%s\t%s\t%08" PRIx32 "\n", info.name.c_str(),
                std::string(SafetensorsName(info.dtype)).c_str(),
                absl::StrJoin(info.shape.dims(), ",").c_str(), crc);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace ucp::formats::safetensors

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s FILE\n", argv[0]);
    return 2;
  }
  absl::Status status = ucp::formats::safetensors::Dump(argv[1]);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
