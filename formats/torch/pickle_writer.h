// The pickle writer: emits a value tree (pickle_value.h) as a protocol-2 pickle the way CPython's
// Pickler does for the objects torch.save and DeepSpeed write (deepspeed-formats.md §9.1), so
// Python's torch.load rebuilds equal values with the same key order and types. A node that
// appears at several places is written once and re-referenced through the memo (BINGET), so
// shared tensors stay shared after loading.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "formats/torch/pickle_value.h"

namespace ucp::formats::torch {

struct PickledTree {
  std::string bytes;
  // Storages in first-reference order; storage i is written under the key str(i).
  std::vector<const StorageRef*> storages;
};

// InvalidArgument for trees the pickle format cannot express (a tensor without storage, an
// object without class, a reference cycle or a tree deeper than `max_depth`).
absl::StatusOr<PickledTree> WritePickle(const Value& root, int max_depth = 1000);

}  // namespace ucp::formats::torch
