#include "formats/base/dtype.h"

#include <array>
#include <cmath>
#include <cstring>

namespace ucp {
namespace {

struct DTypeInfo {
  DType dtype;
  int size;
  absl::string_view name;
  absl::string_view torch_storage;  // empty: no typed storage
  absl::string_view torch_dtype;
  absl::string_view safetensors;
  NumericLayout layout;
};

using K = NumericLayout::Kind;
constexpr std::array<DTypeInfo, kNumDTypes> kInfo = {{
    {DType::kF64, 8, "f64", "DoubleStorage", "float64", "F64", {K::kFloat, 8, 11, 52}},
    {DType::kF32, 4, "f32", "FloatStorage", "float32", "F32", {K::kFloat, 4, 8, 23}},
    {DType::kF16, 2, "f16", "HalfStorage", "float16", "F16", {K::kFloat, 2, 5, 10}},
    {DType::kBF16, 2, "bf16", "BFloat16Storage", "bfloat16", "BF16", {K::kFloat, 2, 8, 7}},
    {DType::kF8E4M3, 1, "f8e4m3", "", "float8_e4m3fn", "F8_E4M3", {K::kFloat, 1, 4, 3}},
    {DType::kF8E5M2, 1, "f8e5m2", "", "float8_e5m2", "F8_E5M2", {K::kFloat, 1, 5, 2}},
    {DType::kI64, 8, "i64", "LongStorage", "int64", "I64", {K::kSignedInt, 8, 0, 0}},
    {DType::kI32, 4, "i32", "IntStorage", "int32", "I32", {K::kSignedInt, 4, 0, 0}},
    {DType::kI16, 2, "i16", "ShortStorage", "int16", "I16", {K::kSignedInt, 2, 0, 0}},
    {DType::kI8, 1, "i8", "CharStorage", "int8", "I8", {K::kSignedInt, 1, 0, 0}},
    {DType::kU8, 1, "u8", "ByteStorage", "uint8", "U8", {K::kUnsignedInt, 1, 0, 0}},
    {DType::kBool, 1, "bool", "BoolStorage", "bool", "BOOL", {K::kBool, 1, 0, 0}},
}};

const DTypeInfo& Info(DType dtype) { return kInfo[static_cast<size_t>(dtype)]; }

template <typename Field>
std::optional<DType> Find(absl::string_view value, Field field) {
  if (value.empty()) return std::nullopt;
  for (const DTypeInfo& info : kInfo) {
    if (info.*field == value) return info.dtype;
  }
  return std::nullopt;
}

}  // namespace

int DTypeSize(DType dtype) { return Info(dtype).size; }
absl::string_view DTypeName(DType dtype) { return Info(dtype).name; }
std::optional<DType> DTypeFromName(absl::string_view name) { return Find(name, &DTypeInfo::name); }

std::optional<absl::string_view> TorchStorageName(DType dtype) {
  if (Info(dtype).torch_storage.empty()) return std::nullopt;
  return Info(dtype).torch_storage;
}
std::optional<DType> DTypeFromTorchStorage(absl::string_view storage_class) {
  return Find(storage_class, &DTypeInfo::torch_storage);
}
absl::string_view TorchDTypeName(DType dtype) { return Info(dtype).torch_dtype; }
std::optional<DType> DTypeFromTorchDTypeName(absl::string_view name) {
  if (name == "float") return DType::kF32;
  if (name == "double") return DType::kF64;
  if (name == "half") return DType::kF16;
  if (name == "long") return DType::kI64;
  if (name == "int") return DType::kI32;
  if (name == "short") return DType::kI16;
  return Find(name, &DTypeInfo::torch_dtype);
}

absl::string_view SafetensorsName(DType dtype) { return Info(dtype).safetensors; }
std::optional<DType> DTypeFromSafetensorsName(absl::string_view name) {
  return Find(name, &DTypeInfo::safetensors);
}

NumericLayout DTypeLayout(DType dtype) { return Info(dtype).layout; }

namespace {

// Decodes a small IEEE-style float (f16, bf16, f8) from its bit fields. float8_e4m3fn has no
// infinities and one NaN pattern (all exponent and mantissa bits set).
double DecodeSmallFloat(uint32_t bits, const NumericLayout& l, bool fn_variant) {
  const uint32_t mantissa = bits & ((1u << l.mantissa_bits) - 1);
  const uint32_t exponent = (bits >> l.mantissa_bits) & ((1u << l.exponent_bits) - 1);
  const bool negative = (bits >> (l.mantissa_bits + l.exponent_bits)) & 1;
  const int bias = (1 << (l.exponent_bits - 1)) - 1;
  const uint32_t max_exponent = (1u << l.exponent_bits) - 1;
  double value;
  if (fn_variant && exponent == max_exponent && mantissa == ((1u << l.mantissa_bits) - 1)) {
    value = std::nan("");
  } else if (!fn_variant && exponent == max_exponent) {
    value = mantissa ? std::nan("") : INFINITY;
  } else if (exponent == 0) {
    value = std::ldexp(static_cast<double>(mantissa), 1 - bias - l.mantissa_bits);
  } else {
    value = std::ldexp(static_cast<double>(mantissa | (1u << l.mantissa_bits)),
                       static_cast<int>(exponent) - bias - l.mantissa_bits);
  }
  return negative ? -value : value;
}

template <typename T>
T Load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

double ElementAsDouble(DType dtype, const std::byte* p) {
  switch (dtype) {
    case DType::kF64: return Load<double>(p);
    case DType::kF32: return Load<float>(p);
    case DType::kF16: return DecodeSmallFloat(Load<uint16_t>(p), DTypeLayout(dtype), false);
    case DType::kBF16: return DecodeSmallFloat(Load<uint16_t>(p), DTypeLayout(dtype), false);
    case DType::kF8E4M3: return DecodeSmallFloat(Load<uint8_t>(p), DTypeLayout(dtype), true);
    case DType::kF8E5M2: return DecodeSmallFloat(Load<uint8_t>(p), DTypeLayout(dtype), false);
    case DType::kI64: return static_cast<double>(Load<int64_t>(p));
    case DType::kI32: return Load<int32_t>(p);
    case DType::kI16: return Load<int16_t>(p);
    case DType::kI8: return Load<int8_t>(p);
    case DType::kU8: return Load<uint8_t>(p);
    case DType::kBool: return Load<uint8_t>(p) != 0;
  }
  return 0;
}

}  // namespace ucp
