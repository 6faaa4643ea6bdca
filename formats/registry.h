// The explicit registry of file formats ucp reads, and Sniff(), which tells them apart from the
// first bytes of a file (never from its name). Adding a format: add an enumerator, a row in
// registry.cc's table with its magic-byte test, and a case where the CLI dispatches on it.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "formats/base/byte_source.h"

namespace ucp::formats {

enum class FileFormat : uint8_t {
  kTorchZip,     // torch.save zip container (formats/torch)
  kTorchLegacy,  // torch.save legacy pickle stream (recognised, not read)
  kSafetensors,  // formats/safetensors
  kHdf5,         // formats/hdf5
};

struct FormatInfo {
  FileFormat format;
  absl::string_view name;         // "torch", "torch-legacy", "safetensors", "hdf5"
  absl::string_view description;  // for --help and errors
  absl::string_view extensions;   // usual extensions, informational only
};

const std::vector<FormatInfo>& Formats();
const FormatInfo& Info(FileFormat format);

// Reads at most the first 2 KiB of `source`. InvalidArgument naming the file when no registered
// format matches; I/O errors from the source.
absl::StatusOr<FileFormat> Sniff(const ByteSource& source);

}  // namespace ucp::formats
