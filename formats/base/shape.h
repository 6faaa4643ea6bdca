// Shape: the dimensions of a tensor (row-major). Dimensions come from files, so element and byte
// counts are overflow-checked and negative dimensions are rejected (DataLoss).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "formats/base/dtype.h"

namespace ucp {

// Largest element count ucp accepts for one tensor (2^50: 1 PiB of bytes at 1 byte/element).
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 50;
// Largest rank ucp accepts.
inline constexpr int kMaxRank = 64;

class Shape {
 public:
  Shape() = default;  // rank 0: a scalar with one element
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  explicit Shape(std::vector<int64_t> dims) : dims_(std::move(dims)) {}

  int rank() const { return static_cast<int>(dims_.size()); }
  int64_t dim(int i) const { return dims_[i]; }
  absl::Span<const int64_t> dims() const { return dims_; }

  // Product of dims. DataLoss if a dim is negative, the rank is above kMaxRank or the product
  // overflows or exceeds kMaxTensorElements.
  absl::StatusOr<int64_t> NumElements() const;
  // NumElements() * DTypeSize(dtype), overflow-checked.
  absl::StatusOr<int64_t> NumBytes(DType dtype) const;
  // Row-major strides in elements.
  std::vector<int64_t> ContiguousStrides() const;

  std::string ToString() const;  // "[3, 4]"; "[]" for a scalar
  friend bool operator==(const Shape&, const Shape&) = default;

 private:
  std::vector<int64_t> dims_;
};

}  // namespace ucp
