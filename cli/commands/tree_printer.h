// Renders a torch.save value tree as indented text for `ucp inspect`: one line per container
// entry, scalars and short sequences inline, tensors as dtype + shape (+ the first values).
#pragma once

#include <functional>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "formats/base/buffer.h"
#include "formats/torch/pickle_value.h"

namespace ucp::cli {

class TreePrinter {
 public:
  using TensorBytesFn = std::function<absl::StatusOr<Buffer>(const formats::torch::TensorRef&)>;

  // `max_items`: entries shown per container (0 = all); `values`: elements shown per tensor.
  TreePrinter(std::ostream& out, int max_items, int values, TensorBytesFn tensor_bytes)
      : out_(out), max_items_(max_items), values_(values), tensor_bytes_(std::move(tensor_bytes)) {}

  absl::Status Print(const formats::torch::Value& root);
  int tensor_count() const { return tensor_count_; }

 private:
  absl::Status Line(const formats::torch::Value& v, int indent, const std::string& label);
  absl::StatusOr<std::string> Inline(const formats::torch::Value& v);
  absl::StatusOr<std::string> TensorText(const formats::torch::TensorRef& t);

  std::ostream& out_;
  int max_items_;
  int values_;
  TensorBytesFn tensor_bytes_;
  int tensor_count_ = 0;
};

}  // namespace ucp::cli
