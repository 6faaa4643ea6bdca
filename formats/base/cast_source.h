// Floating-point casts, element by element as torch's Tensor.to() does them (round to nearest
// even; NaN stays NaN), and a ByteSource that casts lazily: a tensor's bytes, read from other
// sources, served in another dtype chunk by chunk, so an exported bf16/fp16 copy of a model is
// never held in memory (the executor reads a few MiB at a time).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "formats/base/byte_source.h"
#include "formats/base/dtype.h"

namespace ucp {

// True for the dtypes CastElements reads and writes: f64, f32, bf16, f16 (f64 is read only).
bool IsCastableFloat(DType dtype);
// Casts `n` elements from `in` (dtype `from`) to `out` (dtype `to`: f32, bf16 or f16), via float.
void CastElements(DType from, const std::byte* in, DType to, std::byte* out, int64_t n);

// One contiguous piece of the input tensor: `size` bytes at `offset` of `source`.
struct CastInputRun {
  std::shared_ptr<const ByteSource> source;
  uint64_t offset = 0;
  uint64_t size = 0;
};

// `numel` elements of dtype `from`, the concatenation of `runs`, read as dtype `to`. The runs must
// add up to numel * DTypeSize(from) bytes (InvalidArgument otherwise).
absl::StatusOr<std::shared_ptr<ByteSource>> CastingSource(std::vector<CastInputRun> runs,
                                                          DType from, DType to, int64_t numel,
                                                          std::string name);

}  // namespace ucp
