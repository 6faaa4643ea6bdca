#include "formats/torch/pickle_reader.h"

#include "formats/base/status.h"
#include "formats/torch/pickle_vm.h"

namespace ucp::formats::torch {

absl::StatusOr<const Value*> ParsePickle(absl::Span<const std::byte> pickle, ValueArena& arena,
                                         const PickleLimits& limits) {
  internal_pickle::Vm vm(pickle, arena, limits);
  return vm.Run();
}

absl::StatusOr<PickleTree> ParsePickle(absl::Span<const std::byte> pickle,
                                       const PickleLimits& limits) {
  PickleTree tree{std::make_shared<ValueArena>(), nullptr};
  UCP_ASSIGN_OR_RETURN(tree.root, ParsePickle(pickle, *tree.arena, limits));
  return tree;
}

}  // namespace ucp::formats::torch
