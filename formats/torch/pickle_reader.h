// The pickle VM: reads a pickle (protocols 2-5 opcodes, as torch.save and DeepSpeed write them,
// deepspeed-formats.md §9.1) into a value tree (pickle_value.h). It executes nothing: GLOBAL is
// checked against the allow-list (pickle_allowlist.h) and REDUCE/NEWOBJ/BUILD only build nodes.
// Every length, count and index is checked against the bytes left and the limits below before
// use; the finished tree is checked to be acyclic, at most `max_depth` deep and to expand to at
// most `max_expanded_values` nodes, so recursive consumers downstream are safe.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "formats/torch/pickle_value.h"

namespace ucp::formats::torch {

struct PickleLimits {
  int64_t max_values = int64_t{1} << 22;           // nodes created
  int64_t max_stack = int64_t{1} << 22;            // VM stack entries
  int max_depth = 1000;                            // nesting of the finished tree, and of MARKs
  int64_t max_expanded_values = int64_t{1} << 26;  // nodes counted once per reference
  int64_t max_memo = int64_t{1} << 22;             // distinct memo slots
};

// Parses `pickle` into a tree in `arena`. Errors: DataLoss (malformed or hostile: message gives
// the byte offset and opcode), InvalidArgument (a global outside the allow-list, naming
// module.qualname), Unimplemented (a valid opcode or construct ucp does not support).
absl::StatusOr<const Value*> ParsePickle(absl::Span<const std::byte> pickle, ValueArena& arena,
                                         const PickleLimits& limits = {});

// Convenience: parses into a new arena.
absl::StatusOr<PickleTree> ParsePickle(absl::Span<const std::byte> pickle,
                                       const PickleLimits& limits = {});

}  // namespace ucp::formats::torch
