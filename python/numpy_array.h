// Tensor bytes (a Buffer) as numpy arrays. The array shares the Buffer's memory (a mapped file's
// pages when the bytes are one contiguous run): its base object keeps the Buffer, and with it the
// mapping, alive. Arrays are read-only because mapped pages are.
#pragma once

#include "formats/base/buffer.h"
#include "formats/base/dtype.h"
#include "formats/base/shape.h"
#include "pybind11/numpy.h"

namespace ucp::python {

// The numpy dtype that holds `dtype`'s bytes: bf16 → uint16, f8 → uint8 (numpy has neither).
pybind11::dtype NumpyDType(DType dtype);

// A read-only array over `buffer` (zero-copy). `buffer` must hold exactly shape × dtype bytes.
pybind11::array WrapBuffer(Buffer buffer, DType dtype, const Shape& shape);

// bf16 bit patterns (uint16) → float32, exactly (bf16 is the top half of an f32); f16 → float32.
pybind11::array UpcastToFloat32(const pybind11::array& array, DType dtype);

}  // namespace ucp::python
