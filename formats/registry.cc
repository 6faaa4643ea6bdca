#include "formats/registry.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "formats/safetensors/safetensors_format.h"

namespace ucp::formats {
namespace {

bool HasPrefix(absl::Span<const std::byte> head, uint64_t offset, absl::string_view magic) {
  return head.size() >= offset + magic.size() &&
         std::memcmp(head.data() + offset, magic.data(), magic.size()) == 0;
}

// HDF5 superblock signature, at 0 or at a user-block boundary (512, 1024, 2048, ...).
bool LooksLikeHdf5(absl::Span<const std::byte> head) {
  constexpr absl::string_view kMagic("\x89HDF\r\n\x1a\n", 8);
  for (uint64_t offset : {0, 512, 1024}) {
    if (HasPrefix(head, offset, kMagic)) return true;
  }
  return false;
}

}  // namespace

const std::vector<FormatInfo>& Formats() {
  static const std::vector<FormatInfo> kFormats = {
      {FileFormat::kTorchZip, "torch",
       "torch.save zip container (DeepSpeed .pt, pytorch_model.bin)", ".pt .bin .pth"},
      {FileFormat::kTorchLegacy, "torch-legacy", "torch.save legacy (non-zip) pickle stream",
       ".pt"},
      {FileFormat::kSafetensors, "safetensors", "Hugging Face safetensors", ".safetensors"},
      {FileFormat::kHdf5, "hdf5", "HDF5 file (ucp's zstd-compressed UCP store)", ".h5 .hdf5"},
  };
  return kFormats;
}

const FormatInfo& Info(FileFormat format) {
  for (const FormatInfo& info : Formats()) {
    if (info.format == format) return info;
  }
  return Formats().front();
}

absl::StatusOr<FileFormat> Sniff(const ByteSource& source) {
  const uint64_t n = std::min<uint64_t>(source.Size(), 1032);
  UCP_ASSIGN_OR_RETURN(Buffer head, source.ReadBuffer(0, n));
  if (HasPrefix(head.span(), 0, "PK\x03\x04")) return FileFormat::kTorchZip;
  if (HasPrefix(head.span(), 0, absl::string_view("\x80\x02\x8a\x0a", 4)))
    return FileFormat::kTorchLegacy;
  if (LooksLikeHdf5(head.span())) return FileFormat::kHdf5;
  if (safetensors::LooksLikeSafetensors(head.span().subspan(0, std::min<size_t>(head.size(), 16)),
                                        source.Size())) {
    return FileFormat::kSafetensors;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      source.name(), ": not a file format ucp reads (torch.save zip, safetensors or HDF5)"));
}

}  // namespace ucp::formats
