#include "formats/base/tensor_view.h"

namespace ucp {

bool TensorView::IsContiguous() const {
  if (strides.empty()) return true;
  if (static_cast<int>(strides.size()) != shape.rank()) return false;
  int64_t expected = 1;
  for (int i = shape.rank() - 1; i >= 0; --i) {
    if (shape.dim(i) != 1 && strides[i] != expected) return false;
    expected *= shape.dim(i);
  }
  return true;
}

}  // namespace ucp
