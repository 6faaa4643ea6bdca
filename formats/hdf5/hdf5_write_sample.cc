// hdf5_write_sample: the C++ side of the h5py/h5dump interop test (interop_test.py).
//
//   hdf5_write_sample OUT.h5      writes the sample file described below with H5Writer
//   hdf5_write_sample --dump IN   reads any HDF5 file with H5Reader and prints one line per
//                                 dataset: "dataset <path> <dtype> <shape> <crc32 of bytes>",
//                                 then "attr <object> <name> <value>" per attribute
//
// Exit codes: 0 ok, 1 error (one "error: ..." line on stderr), 2 usage.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/base/crc32.h"
#include "formats/base/status.h"
#include "formats/hdf5/h5_reader.h"
#include "formats/hdf5/h5_writer.h"

namespace {

using ucp::DType;
using ucp::Shape;
using ucp::TensorView;
using ucp::formats::hdf5::AttrValue;
using ucp::formats::hdf5::H5Reader;
using ucp::formats::hdf5::H5Writer;

template <typename T>
absl::Status Put(H5Writer& writer, const char* path, DType dtype, Shape shape,
                 const std::vector<T>& values) {
  return writer.WriteTensor(
      path,
      TensorView{dtype, std::move(shape), {}, reinterpret_cast<const std::byte*>(values.data())});
}

absl::Status WriteSample(const std::string& path) {
  ucp::formats::hdf5::WriteOptions options;
  options.chunk_bytes = 256 * 1024;  // several chunks for model/big
  UCP_ASSIGN_OR_RETURN(H5Writer writer, H5Writer::Create(path, options));
  std::vector<float> big(300 * 1000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i % 1000) * 0.5f;
  UCP_RETURN_IF_ERROR(Put(writer, "model/big", DType::kF32, Shape{300, 1000}, big));
  UCP_RETURN_IF_ERROR(
      Put(writer, "scalars/step", DType::kI64, Shape{}, std::vector<int64_t>{12345}));
  UCP_RETURN_IF_ERROR(Put(writer, "dtypes/f64", DType::kF64, Shape{5},
                          std::vector<double>{0.5, -1.25, 3e300, -0.0, 1e-300}));
  UCP_RETURN_IF_ERROR(Put(writer, "dtypes/f32", DType::kF32, Shape{2, 2},
                          std::vector<float>{1.5f, -2.0f, 1e30f, 0.0f}));
  UCP_RETURN_IF_ERROR(Put(writer, "dtypes/f16", DType::kF16, Shape{4},
                          std::vector<uint16_t>{0x3C00, 0xC000, 0x7BFF, 0x0001}));
  UCP_RETURN_IF_ERROR(Put(writer, "dtypes/bf16", DType::kBF16, Shape{4},
                          std::vector<uint16_t>{0x3F80, 0xC040, 0x7F7F, 0x0001}));
  UCP_RETURN_IF_ERROR(Put(writer, "dtypes/f8e5m2", DType::kF8E5M2, Shape{4},
                          std::vector<uint8_t>{0x3C, 0xC0, 0x7B, 0x01}));
  UCP_RETURN_IF_ERROR(Put(writer, "dtypes/f8e4m3", DType::kF8E4M3, Shape{4},
                          std::vector<uint8_t>{0x38, 0x7E, 0xFE, 0x01}));
  UCP_RETURN_IF_ERROR(Put(writer, "dtypes/i64", DType::kI64, Shape{3},
                          std::vector<int64_t>{INT64_MIN, 0, INT64_MAX}));
  UCP_RETURN_IF_ERROR(Put(writer, "dtypes/i32", DType::kI32, Shape{3},
                          std::vector<int32_t>{INT32_MIN, 0, INT32_MAX}));
  UCP_RETURN_IF_ERROR(Put(writer, "dtypes/i16", DType::kI16, Shape{3},
                          std::vector<int16_t>{INT16_MIN, 0, INT16_MAX}));
  UCP_RETURN_IF_ERROR(
      Put(writer, "dtypes/i8", DType::kI8, Shape{3}, std::vector<int8_t>{INT8_MIN, 0, INT8_MAX}));
  UCP_RETURN_IF_ERROR(
      Put(writer, "dtypes/u8", DType::kU8, Shape{3}, std::vector<uint8_t>{0, 128, 255}));
  UCP_RETURN_IF_ERROR(
      Put(writer, "dtypes/bool", DType::kBool, Shape{4}, std::vector<uint8_t>{1, 0, 0, 1}));
  UCP_RETURN_IF_ERROR(Put(writer, "empty", DType::kF32, Shape{0, 4}, std::vector<float>{}));
  UCP_RETURN_IF_ERROR(writer.SetAttribute("/", "format", std::string("ucp-hdf5-sample")));
  UCP_RETURN_IF_ERROR(writer.SetAttribute("/", "step", int64_t{12345}));
  UCP_RETURN_IF_ERROR(writer.SetAttribute("/", "lr", 0.001));
  UCP_RETURN_IF_ERROR(writer.SetAttribute("/", "dims", std::vector<int64_t>{3, 1, 4}));
  UCP_RETURN_IF_ERROR(writer.SetAttribute("model/big", "role", std::string("embedding")));
  return writer.Commit();
}

std::string Repr(const AttrValue& value) {
  if (const auto* i = std::get_if<int64_t>(&value)) return absl::StrCat("int ", *i);
  if (const auto* d = std::get_if<double>(&value)) return absl::StrCat("float ", *d);
  if (const auto* s = std::get_if<std::string>(&value)) return absl::StrCat("str ", *s);
  return absl::StrCat("ints ", absl::StrJoin(std::get<std::vector<int64_t>>(value), ","));
}

absl::Status Dump(const std::string& path) {
  UCP_ASSIGN_OR_RETURN(H5Reader reader, H5Reader::Open(path));
  UCP_ASSIGN_OR_RETURN(ucp::formats::hdf5::AttrList root, reader.Attributes("/"));
  for (const auto& [name, value] : root) {
    std::printf("attr / %s %s\n", name.c_str(), Repr(value).c_str());
  }
  for (const auto& info : reader.datasets()) {
    UCP_ASSIGN_OR_RETURN(ucp::SharedTensor tensor, reader.Read(info.path));
    UCP_ASSIGN_OR_RETURN(int64_t bytes, info.shape.NumBytes(info.dtype));
    uint32_t crc = ucp::Crc32({tensor.view.data, static_cast<size_t>(bytes)});
    std::printf("dataset %s %s [%s] %08x\n", info.path.c_str(),
                std::string(ucp::DTypeName(info.dtype)).c_str(),
                absl::StrJoin(info.shape.dims(), ",").c_str(), crc);
    UCP_ASSIGN_OR_RETURN(ucp::formats::hdf5::AttrList attributes, reader.Attributes(info.path));
    for (const auto& [name, value] : attributes) {
      std::printf("attr %s %s %s\n", info.path.c_str(), name.c_str(), Repr(value).c_str());
    }
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::Status status;
  if (argc == 2 && argv[1][0] != '-') {
    status = WriteSample(argv[1]);
  } else if (argc == 3 && std::strcmp(argv[1], "--dump") == 0) {
    status = Dump(argv[2]);
  } else {
    std::fprintf(stderr, "usage: hdf5_write_sample OUT.h5 | hdf5_write_sample --dump IN.h5\n");
    return 2;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
