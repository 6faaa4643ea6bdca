// Internal: the pickle VM behind ParsePickle (pickle_reader.h). pickle_vm.cc holds the stack,
// the input and the opcode loop; pickle_vm_reduce.cc the interpretation of allow-listed callables
// (REDUCE, NEWOBJ, BUILD, persistent ids) into typed nodes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "formats/base/status.h"
#include "formats/torch/pickle_allowlist.h"
#include "formats/torch/pickle_reader.h"
#include "formats/torch/pickle_value.h"

namespace ucp::formats::torch::internal_pickle {

// Python dict semantics for SETITEM: an existing equal key keeps its position, the value is
// replaced. Keys are indexed per dict for str and int/bool keys (the only ones torch writes).
struct DictIndex {
  absl::flat_hash_map<std::string, size_t> str_keys;
  absl::flat_hash_map<int64_t, size_t> int_keys;
};

class Vm {
 public:
  Vm(absl::Span<const std::byte> in, ValueArena& arena, const PickleLimits& limits)
      : in_(in), arena_(arena), limits_(limits), arena_start_(arena.size()) {}

  absl::StatusOr<const Value*> Run();

 private:
  absl::Status Error(absl::string_view message) const;
  absl::Status Step(bool* stop);

  // Input.
  bool Has(uint64_t n) const { return n <= in_.size() - pos_; }
  absl::StatusOr<absl::string_view> Take(uint64_t n);
  absl::StatusOr<uint64_t> TakeUint(int bytes);  // little-endian
  absl::StatusOr<absl::string_view> TakeLine();

  // Stack.
  absl::Status Push(Value* v);
  absl::StatusOr<Value*> Pop();
  absl::StatusOr<Value*> Top();
  absl::StatusOr<std::vector<Value*>> PopMark();
  absl::StatusOr<Value*> NewValue(Value* v);  // counts nodes against the limit

  // Opcode groups.
  absl::Status PushInt(int64_t v) {
    UCP_ASSIGN_OR_RETURN(Value * n, NewValue(arena_.Int(v)));
    return Push(n);
  }
  absl::Status PushLong(absl::string_view le_bytes);
  absl::Status PushStr(absl::string_view bytes);
  absl::Status PushBytes(absl::string_view bytes);
  absl::Status PushGlobal(std::string module, std::string name);
  absl::Status MemoPut(uint64_t index);
  absl::Status MemoGet(uint64_t index);
  absl::Status Append(Value* seq, absl::Span<Value* const> items);
  absl::Status SetItems(Value* dict, absl::Span<Value* const> kv);
  absl::Status AddItems(Value* set, absl::Span<Value* const> items);

  // Interpretation of allow-listed callables (nothing is executed).
  absl::StatusOr<Value*> Reduce(const Value* callable, const Value* args);
  absl::StatusOr<Value*> NewObj(const Value* cls, const Value* args);
  absl::Status Build(Value* target, const Value* state);
  absl::StatusOr<Value*> PersistentLoad(const Value* pid);
  absl::StatusOr<Value*> RebuildTensor(GlobalRole role, const Value* args);

  absl::Span<const std::byte> in_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  uint8_t op_ = 0;
  ValueArena& arena_;
  const PickleLimits& limits_;
  size_t arena_start_;
  std::vector<Value*> stack_;
  std::vector<size_t> marks_;
  absl::flat_hash_map<uint64_t, Value*> memo_;
  absl::flat_hash_map<std::string, StorageRef*> storages_;
  absl::flat_hash_map<const Value*, DictIndex> dict_index_;
};

}  // namespace ucp::formats::torch::internal_pickle
