#include "formats/torch/pickle_tree_check.h"

#include <algorithm>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace ucp::formats::torch {
namespace {

struct NodeInfo {
  bool done = false;
  int depth = 0;         // 1 for a leaf
  int64_t expanded = 0;  // nodes below, counted per reference, saturating
};

}  // namespace

absl::Status CheckTreeShape(const Value& root, int max_depth, int64_t max_expanded) {
  absl::flat_hash_map<const Value*, NodeInfo> info;
  struct Frame {
    const Value* node;
    std::vector<const Value*> children;
    size_t next = 0;
  };
  std::vector<Frame> stack;
  auto enter = [&](const Value* v) -> absl::Status {
    auto [it, inserted] = info.try_emplace(v);
    if (!inserted) {
      if (!it->second.done)
        return absl::DataLossError("pickle value contains itself (a reference cycle)");
      return absl::OkStatus();
    }
    if (static_cast<int>(stack.size()) >= max_depth) {
      return absl::DataLossError(absl::StrCat("pickle nests deeper than ", max_depth, " levels"));
    }
    Frame f{v, {}, 0};
    ForEachChild(*v, [&](const Value* c) { f.children.push_back(c); });
    stack.push_back(std::move(f));
    return absl::OkStatus();
  };
  if (absl::Status s = enter(&root); !s.ok()) return s;
  while (!stack.empty()) {
    Frame& f = stack.back();
    if (f.next < f.children.size()) {
      const Value* c = f.children[f.next++];
      if (absl::Status s = enter(c); !s.ok()) return s;
      continue;
    }
    NodeInfo node{true, 1, 1};
    for (const Value* c : f.children) {
      const NodeInfo& ci = info[c];
      node.depth = std::max(node.depth, ci.depth + 1);
      node.expanded = std::min(max_expanded + 1, node.expanded + ci.expanded);
    }
    if (node.depth > max_depth) {
      return absl::DataLossError(absl::StrCat("pickle nests deeper than ", max_depth, " levels"));
    }
    if (node.expanded > max_expanded) {
      return absl::DataLossError(
          absl::StrCat("pickle expands to more than ", max_expanded, " values"));
    }
    info[f.node] = node;
    stack.pop_back();
  }
  return absl::OkStatus();
}

}  // namespace ucp::formats::torch
