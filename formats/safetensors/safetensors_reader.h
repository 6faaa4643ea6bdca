// SafetensorsReader: validates a safetensors file (layout in safetensors_format.h) and hands out
// its tensors as zero-copy slices of the source.
//
// Open() checks everything the header claims before anything is allocated from it: the header
// length against a cap and the file size, the JSON schema, dtypes and shapes (overflow-checked),
// and that the tensors tile the byte buffer exactly up to end of file (the rules of
// huggingface/safetensors src/tensor.rs read_metadata / Metadata::validate). After a successful
// Open, Read() cannot fail on a mapped source.
//
//   UCP_ASSIGN_OR_RETURN(auto source, OpenFileSource(path));
//   UCP_ASSIGN_OR_RETURN(auto reader, SafetensorsReader::Open(source));
//   for (const TensorInfo& info : reader.tensors()) {
//     UCP_ASSIGN_OR_RETURN(SharedTensor t, reader.Read(info));
//   }
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "formats/base/byte_source.h"
#include "formats/base/tensor_view.h"
#include "formats/safetensors/safetensors_format.h"

namespace ucp::formats::safetensors {

struct ReadOptions {
  // Headers longer than this are rejected before they are read.
  uint64_t max_header_bytes = kDefaultMaxHeaderBytes;
};

class SafetensorsReader {
 public:
  // Reads and validates the header of `source`. Messages start with source->name(), and name the
  // tensor where one is involved. Errors:
  //   InvalidArgument  `source` is null;
  //   DataLoss         the file breaks a rule of the format (see safetensors_format.h): too short,
  //                    header length above options.max_header_bytes or past the end of the file,
  //                    invalid UTF-8 / JSON / schema, duplicate keys, unknown dtype, negative or
  //                    non-integer dims, rank above kMaxRank, a size that overflows, offsets that
  //                    are reversed, past the buffer, overlapping, leaving holes or not reaching
  //                    the end of the file, or end - begin != numel × dtype size;
  //   Unimplemented    a dtype of the spec that ucp has no DType for (U16, U32, U64, C64, ...);
  //   the source's own errors when reading the header fails.
  static absl::StatusOr<SafetensorsReader> Open(std::shared_ptr<const ByteSource> source,
                                                ReadOptions options = {});

  // Every tensor, ordered by offset (header order among zero-size tensors at the same offset).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // The tensor called `name`, or nullptr.
  const TensorInfo* Find(absl::string_view name) const;
  // "__metadata__" in header order; empty when absent.
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }
  const ByteSource& source() const { return *source_; }

  // The tensor's bytes: a zero-copy slice of the source's mapping when it has one (the tensor
  // keeps the mapping alive), else a heap copy. Data that is not aligned to the dtype size in
  // memory (possible when a writer did not order tensors by alignment) is copied to an aligned
  // buffer. InvalidArgument if `info` does not describe bytes of this file; the source's errors.
  absl::StatusOr<SharedTensor> Read(const TensorInfo& info) const;
  // Read(*Find(name)); NotFound if there is no such tensor.
  absl::StatusOr<SharedTensor> Read(absl::string_view name) const;

 private:
  SafetensorsReader() = default;

  std::shared_ptr<const ByteSource> source_;
  std::vector<TensorInfo> tensors_;
  std::vector<std::pair<std::string, std::string>> metadata_;
  absl::flat_hash_map<std::string, size_t> index_;  // name → position in tensors_
};

}  // namespace ucp::formats::safetensors
