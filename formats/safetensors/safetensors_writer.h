// Writing safetensors files (layout in safetensors_format.h).
//
// Write() streams a whole file into a ByteSink. PlanFile() computes the header and every tensor's
// offsets without any tensor bytes, so an executor can pre-size a file, write the header at 0 and
// fill tensors in later, in any order and in parallel, with ByteSink::WriteAt:
//
//   UCP_ASSIGN_OR_RETURN(PlannedFile plan, PlanFile(specs, metadata));
//   UCP_RETURN_IF_ERROR(sink->WriteAt(0, plan.header_bytes));
//   ... sink->WriteAt(plan.tensors[i].begin, bytes_of_tensor_i) ...
//   UCP_RETURN_IF_ERROR(sink->Commit());
//
// Tensor data is laid out in the order given, back to back. The header is padded with spaces to
// a multiple of 8 bytes as the Rust writer does, so the buffer starts 8-byte aligned; callers that
// want every tensor aligned in memory put larger dtypes first (the Rust writer sorts by alignment).
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "formats/base/byte_sink.h"
#include "formats/base/tensor_view.h"
#include "formats/safetensors/safetensors_format.h"

namespace ucp::formats::safetensors {

// A tensor to write. `view` must be contiguous; its bytes are read, not kept.
struct WriteTensor {
  std::string name;
  TensorView view;
};

// Name, dtype and shape of a tensor to plan.
using TensorSpec = std::tuple<std::string, DType, Shape>;

struct PlannedFile {
  std::string header_bytes;         // the 8-byte length + padded JSON: bytes [0, buffer start)
  std::vector<TensorInfo> tensors;  // in the given order, absolute offsets
  uint64_t total_size = 0;          // header_bytes.size() + all tensor bytes
};

// Plans a file holding `tensors` (data in that order) and `metadata` (as "__metadata__", in that
// order; omitted when empty). InvalidArgument if a tensor name is "__metadata__" (reserved),
// repeats or is not valid UTF-8, a metadata key repeats or a key or value is not valid UTF-8, a
// shape is invalid (negative dims, rank above kMaxRank, too many elements), the total size
// overflows, or the header would exceed kDefaultMaxHeaderBytes.
absl::StatusOr<PlannedFile> PlanFile(
    absl::Span<const TensorSpec> tensors,
    absl::Span<const std::pair<std::string, std::string>> metadata = {});

// Appends a complete safetensors file to `sink` (normally empty); does not Commit. The errors of
// PlanFile, InvalidArgument if a view is not contiguous or has no data, and the sink's errors
// (prefixed with "writing <sink name>").
absl::Status Write(ByteSink& sink, absl::Span<const WriteTensor> tensors,
                   absl::Span<const std::pair<std::string, std::string>> metadata = {});

}  // namespace ucp::formats::safetensors
