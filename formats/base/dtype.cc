#include "formats/base/dtype.h"

#include <array>

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

}  // namespace ucp
