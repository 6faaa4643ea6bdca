// The value tree of a pickle, as the allow-listed pickle VM (pickle_reader.h) builds it and the
// pickle writer (pickle_writer.h) emits it. Nothing in a tree is ever executed: classes are kept
// as names (kGlobal), objects as (class, args, state) records (kObject), and the few callables
// whose meaning we know are interpreted into typed nodes: tensors (_rebuild_tensor_v2/v3,
// _rebuild_parameter, _rebuild_from_type_v2), OrderedDict, set/frozenset, bytes (_codecs.encode).
//
// Nodes live in a ValueArena and point at each other with raw pointers, so a tree is freed in one
// go (no recursive destructors, no leaks from reference cycles in hostile input). The same node
// may appear at several places (the pickle memo): the writer keeps that sharing.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "formats/base/buffer.h"
#include "formats/base/dtype.h"
#include "formats/base/shape.h"

namespace ucp::formats::torch {

enum class ValueKind : uint8_t {
  kNone,
  kBool,
  kInt,     // fits int64
  kBigInt,  // LONG1/LONG4 wider than 64 bits: little-endian two's-complement bytes in str()
  kFloat,
  kStr,
  kBytes,
  kTuple,
  kList,
  kDict,
  kOrderedDict,  // collections.OrderedDict; may carry attributes in state() (e.g. _metadata)
  kSet,
  kFrozenSet,
  kGlobal,   // a class or other global by name, never resolved: module() + name()
  kObject,   // an instance of an allow-listed class: cls(), args(), state(), construction()
  kStorage,  // a persistent-id storage reference outside a tensor rebuild (rare)
  kTensor,
};
absl::string_view ValueKindName(ValueKind kind);

// One storage record of a torch.save file (persistent id ('storage', <XStorage>, key, location,
// numel)).
struct StorageRef {
  std::string key;  // record name under data/
  DType dtype;
  std::string location;  // "cpu", "cuda:0", ...; kept for round trips, ignored for reading
  int64_t numel = 0;     // elements of dtype (bytes when untyped)
  bool untyped = false;  // torch.UntypedStorage (dtype then is kU8; tensors use _rebuild_tensor_v3)
  // Bytes supplied by whoever built the tree (writers); readers leave it empty and serve bytes
  // from the file (TorchFile::StorageBytes).
  std::optional<Buffer> bytes;
};

class Value;

// A tensor: a strided view on a storage (torch/_utils.py _rebuild_tensor_v2).
struct TensorRef {
  enum class Rebuild : uint8_t { kTensorV2, kTensorV3, kParameter };
  const StorageRef* storage = nullptr;
  DType dtype = DType::kF32;   // the storage's dtype, except for _rebuild_tensor_v3
  int64_t storage_offset = 0;  // elements of dtype
  Shape shape;
  std::vector<int64_t> stride;  // elements, one per dim
  bool requires_grad = false;
  Rebuild rebuild = Rebuild::kTensorV2;
  const Value* backward_hooks = nullptr;  // the OrderedDict argument (normally empty)
  const Value* metadata = nullptr;        // optional 7th argument of _rebuild_tensor_v2
  // _rebuild_from_type_v2 wrapper: the Python type (a kGlobal, e.g. torch.Tensor) and the
  // attribute state it restores (e.g. {'ds_id': '12_57'}). Both null when not wrapped.
  const Value* python_type = nullptr;
  const Value* python_state = nullptr;

  bool IsContiguous() const;
  // Element count of the view (overflow-checked at parse time, so plain here).
  int64_t NumElements() const;
};

class Value {
 public:
  ValueKind kind() const { return kind_; }
  bool is(ValueKind k) const { return kind_ == k; }
  bool is_none() const { return kind_ == ValueKind::kNone; }
  bool is_dict() const { return kind_ == ValueKind::kDict || kind_ == ValueKind::kOrderedDict; }
  bool is_sequence() const { return kind_ == ValueKind::kTuple || kind_ == ValueKind::kList; }

  bool bool_value() const { return int_ != 0; }
  int64_t int_value() const { return int_; }
  double float_value() const { return float_; }
  // kStr (UTF-8), kBytes, kBigInt (LE two's complement), kGlobal (module).
  const std::string& str() const { return str_; }
  const std::string& module() const { return str_; }
  const std::string& name() const { return name_; }  // kGlobal
  // kTuple, kList, kSet, kFrozenSet.
  absl::Span<const Value* const> items() const { return items_; }
  // kDict, kOrderedDict, in insertion order.
  absl::Span<const std::pair<const Value*, const Value*>> entries() const { return entries_; }

  // kObject.
  enum class Construction : uint8_t { kReduce, kNewObj };
  const Value* cls() const { return cls_; }
  const Value* args() const { return args_; }  // a kTuple
  Construction construction() const { return construction_; }
  // kObject: BUILD state; kOrderedDict: attribute dict. nullptr when none.
  const Value* state() const { return state_; }

  const StorageRef* storage() const { return storage_; }  // kStorage
  const TensorRef& tensor() const { return *tensor_; }    // kTensor

  // Dict lookup by string key; nullptr when this is not a dict or the key is absent.
  const Value* Get(absl::string_view key) const;
  // True for a kGlobal (or a kObject whose class is) named module.name.
  bool IsGlobal(absl::string_view module, absl::string_view name) const;

 private:
  friend class ValueArena;
  ValueKind kind_ = ValueKind::kNone;
  Construction construction_ = Construction::kReduce;
  int64_t int_ = 0;
  double float_ = 0;
  std::string str_;
  std::string name_;
  std::vector<const Value*> items_;
  std::vector<std::pair<const Value*, const Value*>> entries_;
  const Value* cls_ = nullptr;
  const Value* args_ = nullptr;
  const Value* state_ = nullptr;
  const StorageRef* storage_ = nullptr;
  const TensorRef* tensor_ = nullptr;
};

// Owns every node of one or more trees. Builders (the VM, writers' callers, tests) create nodes
// here and mutate them through the arena while building; afterwards the tree is read-only.
class ValueArena {
 public:
  Value* None();
  Value* Bool(bool v);
  Value* Int(int64_t v);
  Value* BigInt(std::string le_twos_complement);
  Value* Float(double v);
  Value* Str(std::string v);
  Value* Bytes(std::string v);
  Value* Tuple(std::vector<const Value*> items = {});
  Value* List(std::vector<const Value*> items = {});
  Value* Dict();
  Value* OrderedDict();
  Value* Set(ValueKind kind = ValueKind::kSet);  // kSet or kFrozenSet
  Value* Global(std::string module, std::string name);
  Value* Object(const Value* cls, const Value* args, Value::Construction construction);
  Value* Storage(const StorageRef* storage);
  Value* Tensor(TensorRef tensor);
  StorageRef* NewStorage(StorageRef storage);

  // Mutators for building.
  static void Append(Value* seq, const Value* item);                       // list, tuple, set
  static void SetItem(Value* dict, const Value* key, const Value* value);  // appends; no dedup
  static void ReplaceValue(Value* dict, size_t index, const Value* value);
  static void SetState(Value* obj, const Value* state);
  static void SetBool(Value* v, bool b) { v->int_ = b; }
  // Convenience for builders: dict[key] = value with a new str key.
  void SetItem(Value* dict, absl::string_view key, const Value* value) {
    SetItem(dict, Str(std::string(key)), value);
  }

  size_t size() const { return values_.size(); }

 private:
  Value* New(ValueKind kind);
  std::deque<Value> values_;
  std::deque<TensorRef> tensors_;
  std::deque<StorageRef> storages_;
};

// A parsed tree: the root plus the arena that owns it.
struct PickleTree {
  std::shared_ptr<ValueArena> arena;
  const Value* root = nullptr;
};

}  // namespace ucp::formats::torch
