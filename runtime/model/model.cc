#include "runtime/model/model.h"

namespace ucp::runtime {

int Model::Find(const std::string& name) const {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace ucp::runtime
