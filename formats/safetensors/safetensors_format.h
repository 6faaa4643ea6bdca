// safetensors: a flat file of named tensors (huggingface/safetensors README.md, "Format").
//
//   [8 bytes]  N, little-endian u64: the length of the header
//   [N bytes]  header: UTF-8 JSON object starting with '{', optionally padded with trailing spaces
//              {"__metadata__": {"key": "value", ...},               (optional, str → str)
//               "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
//   [rest]     byte buffer: tensor data, little-endian, row-major (C order)
//
// data_offsets are relative to the start of the byte buffer. Rules: keys are unique; end - begin is
// numel(shape) × dtype size; the buffer is entirely indexed, without holes or overlap (which rules
// out polyglot files), and it ends exactly at end of file. Writers pad the header with spaces so
// that the buffer starts 8-byte aligned.
//
// This header holds what the reader (safetensors_reader.h) and writer (safetensors_writer.h)
// share, plus the sniff test used by the format registry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/types/span.h"
#include "formats/base/dtype.h"
#include "formats/base/shape.h"

namespace ucp::formats::safetensors {

// Size of the little-endian header length that opens every file.
inline constexpr uint64_t kHeaderLengthBytes = 8;
// Largest header the reader accepts by default and the writer produces (the Rust reference caps
// headers at 100 MB).
inline constexpr uint64_t kDefaultMaxHeaderBytes = uint64_t{100} << 20;

// One tensor of a file. Offsets are absolute (from the start of the file), [begin, end).
struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t begin = 0;
  uint64_t end = 0;

  friend bool operator==(const TensorInfo&, const TensorInfo&) = default;
};

// Cheap sniff from the first bytes of a file (16 are enough) and its total size: a plausible
// header length followed by '{'. A true answer is a hint; only SafetensorsReader::Open validates.
bool LooksLikeSafetensors(absl::Span<const std::byte> first_bytes, uint64_t file_size);

}  // namespace ucp::formats::safetensors
