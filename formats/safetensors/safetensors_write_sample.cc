// Writes a safetensors file with fixed, known values: one tensor of every DType, a scalar, an
// empty tensor and metadata. safetensors_interop_test.py reads it with its own header parser and
// numpy and compares the values it expects.
//
//   safetensors_write_sample OUT.safetensors
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "formats/base/byte_sink.h"
#include "formats/safetensors/safetensors_writer.h"

namespace ucp::formats::safetensors {
namespace {

struct Sample {
  std::string name;
  DType dtype;
  Shape shape;
  std::vector<std::byte> bytes;
};

// Appends the low `size` bytes of `bits`, little-endian.
void PutLittleEndian(uint64_t bits, int size, std::vector<std::byte>& out) {
  for (int i = 0; i < size; ++i) out.push_back(static_cast<std::byte>((bits >> (8 * i)) & 0xFF));
}

template <typename T>
Sample Integers(std::string name, DType dtype, Shape shape, std::initializer_list<T> values) {
  Sample s{std::move(name), dtype, std::move(shape), {}};
  for (T v : values) PutLittleEndian(static_cast<uint64_t>(v), sizeof(T), s.bytes);
  return s;
}

template <typename Float, typename Bits>
Sample Floats(std::string name, DType dtype, Shape shape, std::initializer_list<Float> values) {
  Sample s{std::move(name), dtype, std::move(shape), {}};
  for (Float v : values) {
    Bits bits;
    std::memcpy(&bits, &v, sizeof(bits));
    PutLittleEndian(bits, sizeof(bits), s.bytes);
  }
  return s;
}

std::vector<Sample> Samples() {
  using D = DType;
  return {
      Floats<double, uint64_t>("f64", D::kF64, {2, 3}, {-1.0, -0.75, -0.5, -0.25, 0.0, 0.25}),
      Floats<float, uint32_t>("f32", D::kF32, {4}, {-2.0f, -0.5f, 1.0f, 2.5f}),
      Integers<int64_t>("i64", D::kI64, {2}, {-(int64_t{1} << 40), int64_t{1} << 62}),
      Integers<int32_t>("i32", D::kI32, {2, 2}, {-1, 0, 1, 2147483647}),
      // float16 bits of 0.5, -1, 2, 65504.
      Integers<uint16_t>("f16", D::kF16, {2, 2}, {0x3800, 0xBC00, 0x4000, 0x7BFF}),
      // bfloat16 bits of 1.0, -2.5, 3.140625.
      Integers<uint16_t>("bf16", D::kBF16, {3}, {0x3F80, 0xC020, 0x4049}),
      Integers<int16_t>("i16", D::kI16, {3}, {-32768, 0, 32767}),
      Integers<int8_t>("i8", D::kI8, {2}, {-128, 127}),
      Integers<uint8_t>("u8", D::kU8, {3}, {0, 128, 255}),
      Integers<uint8_t>("bool", D::kBool, {2, 2}, {1, 0, 0, 1}),
      // float8_e4m3fn bits of 1.0, -2.0, 448 (largest), 2^-9 (smallest subnormal).
      Integers<uint8_t>("f8_e4m3", D::kF8E4M3, {4}, {0x38, 0xC0, 0x7E, 0x01}),
      // float8_e5m2 bits of 1.0, -2.0, 57344 (largest).
      Integers<uint8_t>("f8_e5m2", D::kF8E5M2, {3}, {0x3C, 0xC0, 0x7B}),
      Floats<float, uint32_t>("scalar", D::kF32, {}, {42.0f}),
      Sample{"empty", D::kF32, {0, 3}, {}},
  };
}

int Run(const std::string& path) {
  const std::vector<Sample> samples = Samples();
  std::vector<WriteTensor> tensors;
  for (const Sample& s : samples) {
    tensors.push_back({s.name, {s.dtype, s.shape, {}, s.bytes.data()}});
  }
  const std::vector<std::pair<std::string, std::string>> metadata = {
      {"format", "pt"}, {"note", "h\xC3\xA9llo \"quoted\"\n"}};
  absl::StatusOr<std::unique_ptr<ByteSink>> sink = CreateFileSink(path);
  absl::Status status = sink.status();
  if (status.ok()) status = Write(**sink, tensors, metadata);
  if (status.ok()) status = (*sink)->Commit();
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace ucp::formats::safetensors

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT.safetensors\n", argv[0]);
    return 2;
  }
  return ucp::formats::safetensors::Run(argv[1]);
}
