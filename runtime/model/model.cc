#include "runtime/model/model.h"

#include <ATen/ops/cat.h>

namespace ucp::runtime {

at::Tensor ModelParam::Slice(const at::Tensor& whole) const {
  if (slice_dim < 0) return whole;
  if (one_piece())
    return whole.narrow(slice_dim, slice_begin, shape[static_cast<size_t>(slice_dim)]);
  std::vector<at::Tensor> parts;
  for (const auto& [begin, length] : pieces)
    parts.push_back(whole.narrow(slice_dim, begin, length));
  return at::cat(parts, slice_dim);
}

int Model::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? -1 : it->second;
}

int Model::AddParam(std::string name, std::vector<int64_t> shape, ParamKind kind) {
  ModelParam p;
  p.name = std::move(name);
  p.shape = std::move(shape);
  p.kind = kind;
  const int i = static_cast<int>(params_.size());
  index_[p.name] = i;
  params_.push_back(std::move(p));
  return i;
}
}  // namespace ucp::runtime
