// Test helpers for formats/safetensors: owned random tensors, raw files built from a header
// string, and opening bytes in memory.
#pragma once

#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "formats/base/byte_sink.h"
#include "formats/base/byte_source.h"
#include "formats/safetensors/header_json.h"
#include "formats/safetensors/safetensors_reader.h"
#include "formats/safetensors/safetensors_writer.h"

namespace ucp::formats::safetensors::testing {

// A tensor that owns its bytes, for writing and comparing.
struct OwnedTensor {
  std::string name;
  DType dtype;
  Shape shape;
  std::vector<std::byte> bytes;

  WriteTensor ToWrite() const { return {name, TensorView{dtype, shape, {}, bytes.data()}}; }
};

inline OwnedTensor RandomTensor(std::mt19937_64& rng, std::string name, DType dtype, Shape shape) {
  const int64_t num_bytes = *shape.NumBytes(dtype);
  std::vector<std::byte> bytes(static_cast<size_t>(num_bytes));
  for (std::byte& b : bytes) b = static_cast<std::byte>(rng() & 0xFF);
  return {std::move(name), dtype, std::move(shape), std::move(bytes)};
}

inline std::vector<WriteTensor> ToWrite(const std::vector<OwnedTensor>& tensors) {
  std::vector<WriteTensor> out;
  for (const OwnedTensor& t : tensors) out.push_back(t.ToWrite());
  return out;
}

inline std::string AsString(const std::vector<std::byte>& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// A file whose header length field says `header_length` (default: json.size()).
inline std::string RawFile(absl::string_view json, absl::string_view data,
                           std::optional<uint64_t> header_length = std::nullopt) {
  std::string out;
  internal_safetensors::AppendLittleEndian64(header_length.value_or(json.size()), out);
  out.append(json.data(), json.size());
  out.append(data.data(), data.size());
  return out;
}

inline absl::StatusOr<SafetensorsReader> OpenBytes(absl::string_view bytes,
                                                   ReadOptions options = {},
                                                   std::string name = "test.safetensors") {
  return SafetensorsReader::Open(MemorySource(Buffer::CopyOf(bytes), std::move(name)), options);
}

}  // namespace ucp::formats::safetensors::testing
