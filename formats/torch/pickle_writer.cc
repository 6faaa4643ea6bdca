#include "formats/torch/pickle_writer.h"

#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "formats/torch/pickle_opcodes.h"

namespace ucp::formats::torch {
namespace {

constexpr size_t kBatchSize = 1000;  // CPython Pickler._BATCHSIZE

class Writer {
 public:
  explicit Writer(int max_depth) : max_depth_(max_depth) {}

  absl::StatusOr<PickledTree> Run(const Value& root) {
    Op(kProto);
    Byte(2);
    UCP_RETURN_IF_ERROR(Save(root));
    Op(kStop);
    return PickledTree{std::move(out_), std::move(storage_order_)};
  }

 private:
  void Op(uint8_t op) { out_.push_back(static_cast<char>(op)); }
  void Byte(uint8_t b) { out_.push_back(static_cast<char>(b)); }
  void Le(uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) Byte(static_cast<uint8_t>(v >> (8 * i)));
  }
  void Raw(absl::string_view s) { out_.append(s.data(), s.size()); }

  void Put(uint32_t index) {
    if (index < 256) {
      Op(kBinPut);
      Byte(static_cast<uint8_t>(index));
    } else {
      Op(kLongBinPut);
      Le(index, 4);
    }
  }
  void Get(uint32_t index) {
    if (index < 256) {
      Op(kBinGet);
      Byte(static_cast<uint8_t>(index));
    } else {
      Op(kLongBinGet);
      Le(index, 4);
    }
  }
  // Memoizes `node` at the next index (call right after its opcode).
  void Memoize(const Value* node) { Put(memo_[node] = next_memo_++); }

  void SaveInt(int64_t v) {
    if (v >= 0 && v < 256) {
      Op(kBinInt1);
      Byte(static_cast<uint8_t>(v));
    } else if (v >= 0 && v < 65536) {
      Op(kBinInt2);
      Le(static_cast<uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      Op(kBinInt);
      Le(static_cast<uint32_t>(static_cast<int32_t>(v)), 4);
    } else {
      // Minimal little-endian two's complement (pickle encode_long).
      std::string bytes;
      uint64_t u = static_cast<uint64_t>(v);
      for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>(u >> (8 * i)));
      while (bytes.size() > 1) {
        auto last = static_cast<unsigned char>(bytes.back());
        auto prev = static_cast<unsigned char>(bytes[bytes.size() - 2]);
        if ((last == 0x00 && !(prev & 0x80)) || (last == 0xFF && (prev & 0x80))) {
          bytes.pop_back();
        } else {
          break;
        }
      }
      SaveLong(bytes);
    }
  }
  void SaveLong(absl::string_view le) {
    if (le.size() < 256) {
      Op(kLong1);
      Byte(static_cast<uint8_t>(le.size()));
    } else {
      Op(kLong4);
      Le(le.size(), 4);
    }
    Raw(le);
  }
  void SaveFloat(double d) {
    uint64_t bits;
    std::memcpy(&bits, &d, sizeof bits);
    Op(kBinFloat);
    for (int i = 7; i >= 0; --i) Byte(static_cast<uint8_t>(bits >> (8 * i)));
  }
  // Strings are immutable in Python, so equal strings may share one memo slot.
  void SaveStr(absl::string_view s) {
    auto it = str_memo_.find(s);
    if (it != str_memo_.end()) return Get(it->second);
    Op(kBinUnicode);
    Le(s.size(), 4);
    Raw(s);
    uint32_t index = next_memo_++;
    str_memo_.emplace(std::string(s), index);
    Put(index);
  }
  void SaveGlobal(absl::string_view module, absl::string_view name) {
    std::string key = absl::StrCat(module, "\n", name);
    auto it = global_memo_.find(key);
    if (it != global_memo_.end()) return Get(it->second);
    Op(kGlobal);
    Raw(key);
    Byte('\n');
    uint32_t index = next_memo_++;
    global_memo_.emplace(std::move(key), index);
    Put(index);
  }
  absl::Status SaveItems(absl::Span<const Value* const> items) {
    for (const Value* item : items) UCP_RETURN_IF_ERROR(Save(*item));
    return absl::OkStatus();
  }
  absl::Status SaveTupleOf(absl::Span<const Value* const> items, const Value* memo_node);
  absl::Status SaveBatchedAppends(absl::Span<const Value* const> items);
  absl::Status SaveBatchedSetItems(absl::Span<const std::pair<const Value*, const Value*>> entries);
  absl::Status SaveTensor(const Value& node);
  void SaveRebuildCallable(const TensorRef& t);
  void SaveEmptyOrderedDict();
  absl::Status SaveTensorArgTuple(const TensorRef& t, bool requires_grad);
  absl::Status SaveStorage(const StorageRef& s);
  absl::Status Save(const Value& v);

  int max_depth_;
  int depth_ = 0;
  std::string out_;
  uint32_t next_memo_ = 0;
  absl::flat_hash_map<const Value*, uint32_t> memo_;
  absl::flat_hash_set<const Value*> in_progress_;
  absl::flat_hash_map<std::string, uint32_t> str_memo_;
  absl::flat_hash_map<std::string, uint32_t> global_memo_;
  absl::flat_hash_map<const StorageRef*, std::string> storage_keys_;
  std::vector<const StorageRef*> storage_order_;
};

absl::Status Writer::SaveTupleOf(absl::Span<const Value* const> items, const Value* memo_node) {
  if (items.empty()) {
    Op(kEmptyTuple);
    return absl::OkStatus();
  }
  if (items.size() > 3) Op(kMark);
  UCP_RETURN_IF_ERROR(SaveItems(items));
  Op(items.size() == 1   ? kTuple1
     : items.size() == 2 ? kTuple2
     : items.size() == 3 ? kTuple3
                         : kTuple);
  if (memo_node != nullptr) {
    Memoize(memo_node);
  } else {
    Put(next_memo_++);  // CPython memoizes every non-empty tuple
  }
  return absl::OkStatus();
}

absl::Status Writer::SaveBatchedAppends(absl::Span<const Value* const> items) {
  for (size_t start = 0; start < items.size(); start += kBatchSize) {
    auto batch = items.subspan(start, kBatchSize);
    if (batch.size() == 1) {
      UCP_RETURN_IF_ERROR(Save(*batch[0]));
      Op(kAppend);
    } else {
      Op(kMark);
      UCP_RETURN_IF_ERROR(SaveItems(batch));
      Op(kAppends);
    }
  }
  return absl::OkStatus();
}

absl::Status Writer::SaveBatchedSetItems(
    absl::Span<const std::pair<const Value*, const Value*>> entries) {
  for (size_t start = 0; start < entries.size(); start += kBatchSize) {
    auto batch = entries.subspan(start, kBatchSize);
    if (batch.size() > 1) Op(kMark);
    for (const auto& [k, v] : batch) {
      UCP_RETURN_IF_ERROR(Save(*k));
      UCP_RETURN_IF_ERROR(Save(*v));
    }
    Op(batch.size() == 1 ? kSetItem : kSetItems);
  }
  return absl::OkStatus();
}

absl::Status Writer::SaveStorage(const StorageRef& s) {
  // BINPERSID of ('storage', torch.<X>Storage, key, location, numel); keys renumbered in
  // first-reference order, as torch.save assigns them.
  auto [it, inserted] = storage_keys_.try_emplace(&s, "");
  if (inserted) {
    it->second = absl::StrCat(storage_order_.size());
    storage_order_.push_back(&s);
  }
  Op(kMark);
  SaveStr("storage");
  if (s.untyped) {
    SaveGlobal("torch", "UntypedStorage");
  } else {
    std::optional<absl::string_view> cls = TorchStorageName(s.dtype);
    if (!cls)
      return absl::InvalidArgumentError(
          absl::StrCat("dtype ", DTypeName(s.dtype), " has no typed torch storage"));
    SaveGlobal("torch", *cls);
  }
  SaveStr(it->second);
  SaveStr(s.location.empty() ? "cpu" : s.location);
  SaveInt(s.numel);
  Op(kTuple);
  Put(next_memo_++);
  Op(kBinPersId);
  return absl::OkStatus();
}

void Writer::SaveRebuildCallable(const TensorRef& t) {
  bool v3 = t.rebuild == TensorRef::Rebuild::kTensorV3 || t.storage->untyped;
  SaveGlobal("torch._utils", v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2");
}

void Writer::SaveEmptyOrderedDict() {
  SaveGlobal("collections", "OrderedDict");
  Op(kEmptyTuple);
  Op(kReduce);
  Put(next_memo_++);
}

absl::Status Writer::SaveTensorArgTuple(const TensorRef& t, bool requires_grad) {
  // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, dtype][, metadata])
  bool v3 = t.rebuild == TensorRef::Rebuild::kTensorV3 || t.storage->untyped;
  Op(kMark);
  UCP_RETURN_IF_ERROR(SaveStorage(*t.storage));
  SaveInt(t.storage_offset);
  const std::vector<int64_t> dims(t.shape.dims().begin(), t.shape.dims().end());
  for (const std::vector<int64_t>* ints : {&dims, &t.stride}) {
    if (ints->empty()) {
      Op(kEmptyTuple);
      continue;
    }
    if (ints->size() > 3) Op(kMark);
    for (int64_t x : *ints) SaveInt(x);
    Op(ints->size() == 1   ? kTuple1
       : ints->size() == 2 ? kTuple2
       : ints->size() == 3 ? kTuple3
                           : kTuple);
    Put(next_memo_++);
  }
  Op(requires_grad ? kNewTrue : kNewFalse);
  if (t.backward_hooks != nullptr) {
    UCP_RETURN_IF_ERROR(Save(*t.backward_hooks));
  } else {
    SaveEmptyOrderedDict();
  }
  if (v3) SaveGlobal("torch", TorchDTypeName(t.dtype));
  if (t.metadata != nullptr) UCP_RETURN_IF_ERROR(Save(*t.metadata));
  Op(kTuple);
  Put(next_memo_++);
  return absl::OkStatus();
}

absl::Status Writer::SaveTensor(const Value& node) {
  const TensorRef& t = node.tensor();
  if (t.storage == nullptr) return absl::InvalidArgumentError("tensor without storage");
  if (t.python_type != nullptr) {
    // _rebuild_from_type_v2(_rebuild_tensor_vN, type, (args...), state)
    SaveGlobal("torch._tensor", "_rebuild_from_type_v2");
    Op(kMark);
    SaveRebuildCallable(t);
    UCP_RETURN_IF_ERROR(Save(*t.python_type));
    UCP_RETURN_IF_ERROR(SaveTensorArgTuple(t, t.requires_grad));
    if (t.python_state != nullptr) {
      UCP_RETURN_IF_ERROR(Save(*t.python_state));
    } else {
      Op(kEmptyDict);
      Put(next_memo_++);
    }
    Op(kTuple);
    Put(next_memo_++);
  } else if (t.rebuild == TensorRef::Rebuild::kParameter) {
    // _rebuild_parameter(data, requires_grad, hooks[, state]); data is a plain tensor.
    bool with_state = t.python_state != nullptr;
    SaveGlobal("torch._utils", with_state ? "_rebuild_parameter_with_state" : "_rebuild_parameter");
    if (with_state) Op(kMark);
    SaveRebuildCallable(t);
    UCP_RETURN_IF_ERROR(SaveTensorArgTuple(t, false));
    Op(kReduce);
    Put(next_memo_++);
    Op(t.requires_grad ? kNewTrue : kNewFalse);
    if (t.backward_hooks != nullptr) {
      UCP_RETURN_IF_ERROR(Save(*t.backward_hooks));
    } else {
      SaveEmptyOrderedDict();
    }
    if (with_state) UCP_RETURN_IF_ERROR(Save(*t.python_state));
    Op(with_state ? kTuple : kTuple3);
    Put(next_memo_++);
  } else {
    SaveRebuildCallable(t);
    UCP_RETURN_IF_ERROR(SaveTensorArgTuple(t, t.requires_grad));
  }
  Op(kReduce);
  Memoize(&node);
  return absl::OkStatus();
}

absl::Status Writer::Save(const Value& v) {
  if (auto it = memo_.find(&v); it != memo_.end()) {
    Get(it->second);
    return absl::OkStatus();
  }
  if (in_progress_.contains(&v))
    return absl::InvalidArgumentError("value tree contains a reference cycle");
  if (++depth_ > max_depth_) return absl::InvalidArgumentError("value tree is nested too deeply");
  in_progress_.insert(&v);
  absl::Status status = absl::OkStatus();
  switch (v.kind()) {
    case ValueKind::kNone: Op(kNone); break;
    case ValueKind::kBool: Op(v.bool_value() ? kNewTrue : kNewFalse); break;
    case ValueKind::kInt: SaveInt(v.int_value()); break;
    case ValueKind::kBigInt: SaveLong(v.str()); break;
    case ValueKind::kFloat: SaveFloat(v.float_value()); break;
    case ValueKind::kStr: SaveStr(v.str()); break;
    case ValueKind::kBytes: {
      // Protocol 2: bytes() for b'', else _codecs.encode(<latin-1 decoded str>, 'latin1').
      if (v.str().empty()) {
        SaveGlobal("__builtin__", "bytes");
        Op(kEmptyTuple);
      } else {
        SaveGlobal("_codecs", "encode");
        std::string text;
        for (char c : v.str()) {
          auto b = static_cast<unsigned char>(c);
          if (b < 0x80) {
            text.push_back(c);
          } else {
            text.push_back(static_cast<char>(0xC0 | (b >> 6)));
            text.push_back(static_cast<char>(0x80 | (b & 0x3F)));
          }
        }
        SaveStr(text);
        SaveStr("latin1");
        Op(kTuple2);
        Put(next_memo_++);
      }
      Op(kReduce);
      Memoize(&v);
      break;
    }
    case ValueKind::kTuple: status = SaveTupleOf(v.items(), &v); break;
    case ValueKind::kList:
      Op(kEmptyList);
      Memoize(&v);
      status = SaveBatchedAppends(v.items());
      break;
    case ValueKind::kDict:
      Op(kEmptyDict);
      Memoize(&v);
      status = SaveBatchedSetItems(v.entries());
      break;
    case ValueKind::kOrderedDict:
      SaveGlobal("collections", "OrderedDict");
      Op(kEmptyTuple);
      Op(kReduce);
      Memoize(&v);
      status = SaveBatchedSetItems(v.entries());
      if (status.ok() && v.state() != nullptr) {
        status = Save(*v.state());
        Op(kBuild);
      }
      break;
    case ValueKind::kSet:
    case ValueKind::kFrozenSet:
      SaveGlobal("__builtin__", v.is(ValueKind::kSet) ? "set" : "frozenset");
      Op(kEmptyList);
      Put(next_memo_++);
      status = SaveBatchedAppends(v.items());
      Op(kTuple1);
      Put(next_memo_++);
      Op(kReduce);
      Memoize(&v);
      break;
    case ValueKind::kGlobal:
      SaveGlobal(v.module(), v.name());
      memo_[&v] = global_memo_[absl::StrCat(v.module(), "\n", v.name())];
      break;
    case ValueKind::kObject: {
      if (v.cls() == nullptr || v.args() == nullptr) {
        status = absl::InvalidArgumentError("object without class or arguments");
        break;
      }
      status = Save(*v.cls());
      if (status.ok()) status = Save(*v.args());
      Op(v.construction() == Value::Construction::kNewObj ? kNewObj : kReduce);
      Memoize(&v);
      if (status.ok() && v.state() != nullptr) {
        status = Save(*v.state());
        Op(kBuild);
      }
      break;
    }
    case ValueKind::kStorage: status = SaveStorage(*v.storage()); break;
    case ValueKind::kTensor: status = SaveTensor(v); break;
  }
  in_progress_.erase(&v);
  --depth_;
  return status;
}

}  // namespace

absl::StatusOr<PickledTree> WritePickle(const Value& root, int max_depth) {
  Writer writer(max_depth);
  return writer.Run(root);
}

}  // namespace ucp::formats::torch
