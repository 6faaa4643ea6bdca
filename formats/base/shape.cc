#include "formats/base/shape.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/base/checked_math.h"

namespace ucp {

absl::StatusOr<int64_t> Shape::NumElements() const {
  if (rank() > kMaxRank) {
    return absl::DataLossError(absl::StrCat("tensor rank ", rank(), " exceeds ", kMaxRank));
  }
  int64_t n = 1;
  for (int64_t d : dims_) {
    if (d < 0) return absl::DataLossError(absl::StrCat("negative dimension in shape ", ToString()));
    auto m = CheckedMul(n, d);
    if (!m || *m > kMaxTensorElements) {
      return absl::DataLossError(absl::StrCat("shape ", ToString(), " has too many elements"));
    }
    n = *m;
  }
  return n;
}

absl::StatusOr<int64_t> Shape::NumBytes(DType dtype) const {
  absl::StatusOr<int64_t> n = NumElements();
  if (!n.ok()) return n.status();
  return *n * DTypeSize(dtype);  // cannot overflow: n <= 2^50, size <= 8
}

std::vector<int64_t> Shape::ContiguousStrides() const {
  std::vector<int64_t> strides(dims_.size());
  int64_t s = 1;
  for (int i = rank() - 1; i >= 0; --i) {
    strides[i] = s;
    s *= dims_[i] > 0 ? dims_[i] : 1;
  }
  return strides;
}

std::string Shape::ToString() const { return absl::StrCat("[", absl::StrJoin(dims_, ", "), "]"); }

}  // namespace ucp
