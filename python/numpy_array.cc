#include "python/numpy_array.h"

#include <cstdint>
#include <cstring>
#include <vector>

namespace ucp::python {

namespace py = pybind11;

py::dtype NumpyDType(DType dtype) {
  switch (dtype) {
    case DType::kF64: return py::dtype("float64");
    case DType::kF32: return py::dtype("float32");
    case DType::kF16: return py::dtype("float16");
    case DType::kBF16: return py::dtype("uint16");
    case DType::kF8E4M3:
    case DType::kF8E5M2:
    case DType::kU8: return py::dtype("uint8");
    case DType::kI64: return py::dtype("int64");
    case DType::kI32: return py::dtype("int32");
    case DType::kI16: return py::dtype("int16");
    case DType::kI8: return py::dtype("int8");
    case DType::kBool: return py::dtype("bool");
  }
  return py::dtype("uint8");
}

py::array WrapBuffer(Buffer buffer, DType dtype, const Shape& shape) {
  std::vector<py::ssize_t> dims(shape.dims().begin(), shape.dims().end());
  std::vector<py::ssize_t> strides(dims.size());
  py::ssize_t stride = DTypeSize(dtype);
  for (size_t i = dims.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= dims[i];
  }
  const void* data = buffer.data();
  auto* owner = new Buffer(std::move(buffer));
  py::capsule base(owner, [](void* p) { delete static_cast<Buffer*>(p); });
  py::array array(NumpyDType(dtype), dims, strides, data, base);
  array.attr("setflags")(py::arg("write") = false);
  return array;
}

py::array UpcastToFloat32(const py::array& array, DType dtype) {
  if (dtype == DType::kF16) return array.attr("astype")("float32");
  if (dtype != DType::kBF16) return array;
  py::array_t<float> out(std::vector<py::ssize_t>(array.shape(), array.shape() + array.ndim()));
  const auto* in = static_cast<const uint16_t*>(array.data());
  float* dst = out.mutable_data();
  for (py::ssize_t i = 0; i < array.size(); ++i) {
    const uint32_t bits = static_cast<uint32_t>(in[i]) << 16;
    std::memcpy(&dst[i], &bits, sizeof bits);
  }
  return out;
}

}  // namespace ucp::python
