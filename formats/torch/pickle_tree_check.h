// Shape checks of a finished value tree: acyclic, bounded depth, bounded expanded size (every
// node counted once per reference, so "billion laughs" memo sharing is caught). Runs iteratively.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "formats/torch/pickle_value.h"

namespace ucp::formats::torch {

// Calls `fn` on each direct child of `v` (items, dict keys and values, class/args/state, tensor
// hooks/metadata/type/state).
template <typename Fn>
void ForEachChild(const Value& v, Fn&& fn) {
  for (const Value* c : v.items()) fn(c);
  for (const auto& [k, val] : v.entries()) {
    fn(k);
    fn(val);
  }
  if (v.cls()) fn(v.cls());
  if (v.args()) fn(v.args());
  if (v.state()) fn(v.state());
  if (v.is(ValueKind::kTensor)) {
    const TensorRef& t = v.tensor();
    for (const Value* c : {t.backward_hooks, t.metadata, t.python_type, t.python_state}) {
      if (c) fn(c);
    }
  }
}

// DataLoss when the tree has a cycle, is deeper than max_depth or expands beyond max_expanded.
absl::Status CheckTreeShape(const Value& root, int max_depth, int64_t max_expanded);

}  // namespace ucp::formats::torch
