// TensorView borrows the bytes of a tensor (pass it as a parameter); SharedTensor owns them
// (store and return it). Strides are in elements, as torch writes them.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "formats/base/buffer.h"
#include "formats/base/dtype.h"
#include "formats/base/shape.h"

namespace ucp {

struct TensorView {
  DType dtype = DType::kF32;
  Shape shape;
  std::vector<int64_t> strides;  // elements; empty means row-major contiguous
  const std::byte* data = nullptr;

  // True when the elements are laid out row-major without gaps (size-1 dims' strides ignored).
  bool IsContiguous() const;
};

struct SharedTensor {
  TensorView view;
  std::shared_ptr<const void> owner;  // keeps view.data alive

  // A contiguous tensor over `buffer` (which must hold shape × dtype bytes).
  static SharedTensor Contiguous(DType dtype, Shape shape, const Buffer& buffer) {
    return SharedTensor{TensorView{dtype, std::move(shape), {}, buffer.data()}, buffer.owner()};
  }
};

}  // namespace ucp
