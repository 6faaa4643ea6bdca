#include "runtime/model/model.h"

namespace ucp::runtime {

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
