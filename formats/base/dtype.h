// DType: the element types ucp reads and writes. dtype.cc is the only place that maps them to
// the names other formats use: torch storage classes ("FloatStorage") and dtype names
// ("float32"), safetensors ("F32") and the numeric layout HDF5 types are built from.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"

namespace ucp {

enum class DType : uint8_t {
  kF64,
  kF32,
  kF16,
  kBF16,
  kF8E4M3,
  kF8E5M2,
  kI64,
  kI32,
  kI16,
  kI8,
  kU8,
  kBool,
};
inline constexpr int kNumDTypes = 12;

// Bytes per element (1..8).
int DTypeSize(DType dtype);
// Short name used by ucp's CLI and JSON: "f64" "f32" "f16" "bf16" "f8e4m3" "f8e5m2" "i64" "i32"
// "i16" "i8" "u8" "bool".
absl::string_view DTypeName(DType dtype);
std::optional<DType> DTypeFromName(absl::string_view name);

// torch: storage class names of the zip format (torch/storage.py), e.g. "BFloat16Storage".
// float8 types have no typed storage (torch stores them as UntypedStorage + dtype).
std::optional<absl::string_view> TorchStorageName(DType dtype);
std::optional<DType> DTypeFromTorchStorage(absl::string_view storage_class);
// torch dtype attribute names ("float32", "bfloat16", "float8_e4m3fn", ...), as in `torch.float32`.
absl::string_view TorchDTypeName(DType dtype);
std::optional<DType> DTypeFromTorchDTypeName(absl::string_view name);

// safetensors header names ("F64" "F32" "F16" "BF16" "F8_E4M3" "F8_E5M2" "I64" ... "U8" "BOOL").
absl::string_view SafetensorsName(DType dtype);
std::optional<DType> DTypeFromSafetensorsName(absl::string_view name);

// How the bits of an element are laid out; formats/hdf5 builds its HDF5 types from this.
struct NumericLayout {
  enum class Kind : uint8_t { kFloat, kSignedInt, kUnsignedInt, kBool };
  Kind kind;
  int bytes;
  int exponent_bits;  // floats only
  int mantissa_bits;  // floats only, without the implicit bit
};
NumericLayout DTypeLayout(DType dtype);

// The value of one little-endian element at `p` as a double (exact for every type but i64 beyond
// 2^53). Used to print values; conversions of data use the format's own bytes.
double ElementAsDouble(DType dtype, const std::byte* p);

}  // namespace ucp
