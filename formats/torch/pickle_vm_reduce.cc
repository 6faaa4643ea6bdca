// Interpretation of allow-listed callables (deepspeed-formats.md §2.6, §9.3, §9.4). Nothing is
// called: each role is turned into a node, and every argument is checked for type and range.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "formats/base/checked_math.h"
#include "formats/base/status.h"
#include "formats/torch/pickle_vm.h"

namespace ucp::formats::torch::internal_pickle {
namespace {

std::string Qualname(const Value& g) { return absl::StrCat(g.module(), ".", g.name()); }

std::optional<GlobalRole> RoleOf(const Value* v) {
  if (v == nullptr || !v->is(ValueKind::kGlobal)) return std::nullopt;
  return LookupGlobal(v->module(), v->name());
}

bool IsIntLike(const Value* v) { return v->is(ValueKind::kInt) || v->is(ValueKind::kBool); }

}  // namespace

absl::StatusOr<Value*> Vm::PersistentLoad(const Value* pid) {
  // ('storage', <GLOBAL torch.XStorage>, key: str, location: str, numel: int)
  if (!pid->is(ValueKind::kTuple) || pid->items().size() != 5) {
    return Error("persistent id is not a 5-tuple ('storage', type, key, location, numel)");
  }
  auto items = pid->items();
  if (!items[0]->is(ValueKind::kStr) || items[0]->str() != "storage")
    return Error("persistent id tag is not 'storage'");
  if (RoleOf(items[1]) != GlobalRole::kStorageType)
    return Error("persistent id names no storage type");
  if (!items[2]->is(ValueKind::kStr) || !items[3]->is(ValueKind::kStr) ||
      !items[4]->is(ValueKind::kInt)) {
    return Error("persistent id fields have the wrong types");
  }
  const std::string& type_name = items[1]->name();
  bool untyped = type_name == "UntypedStorage";
  DType dtype = untyped ? DType::kU8 : *DTypeFromTorchStorage(type_name);
  int64_t numel = items[4]->int_value();
  if (numel < 0 || numel > kMaxTensorElements)
    return Error(absl::StrCat("storage numel ", numel, " out of range"));
  const std::string& key = items[2]->str();
  if (key.empty() || key.size() > 256 || key.find('/') != std::string::npos ||
      key.find("..") != std::string::npos) {
    return Error(absl::StrCat("storage key '", key, "' is not a plain record name"));
  }
  auto [it, inserted] = storages_.try_emplace(key, nullptr);
  if (inserted) {
    it->second =
        arena_.NewStorage(StorageRef{key, dtype, items[3]->str(), numel, untyped, std::nullopt});
  } else if (it->second->dtype != dtype || it->second->numel != numel ||
             it->second->untyped != untyped) {
    return Error(
        absl::StrCat("storage '", key, "' is referenced with two different types or sizes"));
  }
  return NewValue(arena_.Storage(it->second));
}

absl::StatusOr<Value*> Vm::RebuildTensor(GlobalRole role, const Value* args) {
  // v2: (storage, offset, size, stride, requires_grad, hooks[, metadata])
  // v3: (storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])
  bool v3 = role == GlobalRole::kRebuildTensorV3;
  size_t n = args->items().size();
  if (n != (v3 ? 7u : 6u) && n != (v3 ? 8u : 7u))
    return Error("tensor rebuild with the wrong number of arguments");
  auto a = args->items();
  if (!a[0]->is(ValueKind::kStorage)) return Error("tensor rebuild without a storage");
  if (!a[1]->is(ValueKind::kInt)) return Error("tensor storage_offset is not an int");
  if (!a[2]->is(ValueKind::kTuple) || !a[3]->is(ValueKind::kTuple))
    return Error("tensor size/stride are not tuples");
  if (a[2]->items().size() != a[3]->items().size())
    return Error("tensor size and stride differ in length");
  if (!IsIntLike(a[4])) return Error("tensor requires_grad is not a bool");
  TensorRef t;
  t.storage = a[0]->storage();
  t.dtype = t.storage->dtype;
  int64_t storage_elements = t.storage->numel;
  if (v3) {
    if (RoleOf(a[6]) != GlobalRole::kDType)
      return Error("_rebuild_tensor_v3 without a torch dtype");
    DType dtype = *DTypeFromTorchDTypeName(a[6]->name());
    if (t.storage->untyped) {
      if (t.storage->numel % DTypeSize(dtype) != 0)
        return Error("untyped storage size is not a multiple of the dtype size");
      storage_elements = t.storage->numel / DTypeSize(dtype);
    } else if (dtype != t.storage->dtype) {
      return Error("_rebuild_tensor_v3 dtype differs from its typed storage");
    }
    t.dtype = dtype;
  } else if (t.storage->untyped) {
    return Error("_rebuild_tensor_v2 on an untyped storage");
  }
  t.storage_offset = a[1]->int_value();
  t.requires_grad = a[4]->int_value() != 0;
  t.backward_hooks = a[5];
  if (n == (v3 ? 8u : 7u)) t.metadata = a[n - 1];
  t.rebuild = v3 ? TensorRef::Rebuild::kTensorV3 : TensorRef::Rebuild::kTensorV2;
  std::vector<int64_t> dims;
  for (size_t i = 0; i < a[2]->items().size(); ++i) {
    const Value* d = a[2]->items()[i];
    const Value* s = a[3]->items()[i];
    if (!d->is(ValueKind::kInt) || !s->is(ValueKind::kInt))
      return Error("tensor size/stride entries are not ints");
    if (s->int_value() < 0) return Error("negative tensor stride");
    dims.push_back(d->int_value());
    t.stride.push_back(s->int_value());
  }
  t.shape = Shape(std::move(dims));
  absl::StatusOr<int64_t> numel = t.shape.NumElements();
  if (!numel.ok()) return Error(numel.status().message());
  if (t.storage_offset < 0) return Error("negative storage_offset");
  // The view must lie inside the storage: offset + sum((size-1)*stride) < storage elements.
  if (*numel > 0) {
    int64_t last = t.storage_offset;
    for (int i = 0; i < t.shape.rank(); ++i) {
      auto span = CheckedMul(t.shape.dim(i) - 1, t.stride[i]);
      auto sum = span ? CheckedAdd(last, *span) : std::nullopt;
      if (!sum) return Error("tensor view offsets overflow");
      last = *sum;
    }
    if (last >= storage_elements) {
      return Error(absl::StrCat("tensor view of shape ", t.shape.ToString(), " at offset ",
                                t.storage_offset, " reaches element ", last, " of a storage with ",
                                storage_elements));
    }
  } else if (t.storage_offset > storage_elements) {
    return Error("storage_offset past the end of its storage");
  }
  return NewValue(arena_.Tensor(std::move(t)));
}

absl::StatusOr<Value*> Vm::Reduce(const Value* callable, const Value* args) {
  std::optional<GlobalRole> role = RoleOf(callable);
  if (!role)
    return Error(
        absl::StrCat("REDUCE on a ", ValueKindName(callable->kind()), ", not an allowed callable"));
  if (!args->is(ValueKind::kTuple)) return Error("REDUCE arguments are not a tuple");
  auto a = args->items();
  switch (*role) {
    case GlobalRole::kRebuildTensorV2:
    case GlobalRole::kRebuildTensorV3: return RebuildTensor(*role, args);
    case GlobalRole::kRebuildParameter:
    case GlobalRole::kRebuildParameterWithState: {
      // (data, requires_grad, backward_hooks[, state])
      size_t want = *role == GlobalRole::kRebuildParameter ? 3 : 4;
      if (a.size() != want || !a[0]->is(ValueKind::kTensor) || !IsIntLike(a[1])) {
        return Error("_rebuild_parameter arguments are not (tensor, bool, hooks)");
      }
      TensorRef t = a[0]->tensor();
      t.rebuild = TensorRef::Rebuild::kParameter;
      t.requires_grad = a[1]->int_value() != 0;
      t.backward_hooks = a[2];
      if (want == 4) t.python_state = a[3];
      return NewValue(arena_.Tensor(std::move(t)));
    }
    case GlobalRole::kRebuildFromTypeV2: {
      // (func, new_type, args, state): func(*args), then restore Python attributes from state.
      if (a.size() != 4 || !a[2]->is(ValueKind::kTuple))
        return Error("_rebuild_from_type_v2 needs (func, type, args, state)");
      std::optional<GlobalRole> inner = RoleOf(a[0]);
      if (inner != GlobalRole::kRebuildTensorV2 && inner != GlobalRole::kRebuildTensorV3) {
        return Error("_rebuild_from_type_v2 wraps something other than a tensor rebuild");
      }
      if (RoleOf(a[1]) != GlobalRole::kClass)
        return Error("_rebuild_from_type_v2 type is not an allowed class");
      UCP_ASSIGN_OR_RETURN(Value * tensor, RebuildTensor(*inner, a[2]));
      TensorRef t = tensor->tensor();
      t.python_type = a[1];
      t.python_state = a[3];
      return NewValue(arena_.Tensor(std::move(t)));
    }
    case GlobalRole::kOrderedDict: {
      if (!a.empty()) return Error("OrderedDict with constructor arguments");
      return NewValue(arena_.OrderedDict());
    }
    case GlobalRole::kSet:
    case GlobalRole::kFrozenSet: {
      Value* set = arena_.Set(*role == GlobalRole::kSet ? ValueKind::kSet : ValueKind::kFrozenSet);
      if (a.size() > 1 || (a.size() == 1 && !a[0]->is_sequence()))
        return Error("set() needs one list");
      if (a.size() == 1) {
        for (const Value* item : a[0]->items()) ValueArena::Append(set, item);
      }
      return NewValue(set);
    }
    case GlobalRole::kCodecsEncode: {
      // Protocol 2 writes bytes as _codecs.encode(<latin-1 text as str>, 'latin1').
      if (a.size() != 2 || !a[0]->is(ValueKind::kStr) || !a[1]->is(ValueKind::kStr) ||
          (a[1]->str() != "latin1" && a[1]->str() != "latin-1")) {
        return Error("_codecs.encode is allowed only as encode(str, 'latin1')");
      }
      std::string out;
      const std::string& s = a[0]->str();
      for (size_t i = 0; i < s.size(); ++i) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
          out.push_back(static_cast<char>(c));
        } else if ((c == 0xC2 || c == 0xC3) && i + 1 < s.size()) {
          out.push_back(
              static_cast<char>(((c & 0x3) << 6) | (static_cast<unsigned char>(s[++i]) & 0x3F)));
        } else {
          return Error("_codecs.encode text has a character outside latin-1");
        }
      }
      return NewValue(arena_.Bytes(std::move(out)));
    }
    case GlobalRole::kBytes:
      if (!a.empty()) return Error("bytes() with arguments");
      return NewValue(arena_.Bytes(""));
    case GlobalRole::kGetattr:
      // Enum members pickled by name: getattr(<allowed class>, 'member').
      if (a.size() != 2 || RoleOf(a[0]) != GlobalRole::kClass || !a[1]->is(ValueKind::kStr)) {
        return Error("getattr is allowed only as getattr(<allowed class>, 'name')");
      }
      return NewValue(arena_.Object(callable, args, Value::Construction::kReduce));
    case GlobalRole::kClass:
      return NewValue(arena_.Object(callable, args, Value::Construction::kReduce));
    case GlobalRole::kStorageType:
    case GlobalRole::kDType: break;
  }
  return Error(absl::StrCat("REDUCE on ", Qualname(*callable),
                            ", which is not callable in ucp's allow-list"));
}

absl::StatusOr<Value*> Vm::NewObj(const Value* cls, const Value* args) {
  if (RoleOf(cls) != GlobalRole::kClass) {
    return Error(absl::StrCat("NEWOBJ on ",
                              cls->is(ValueKind::kGlobal) ? Qualname(*cls) : "a non-class",
                              ", which is not an allowed class"));
  }
  if (!args->is(ValueKind::kTuple)) return Error("NEWOBJ arguments are not a tuple");
  return NewValue(arena_.Object(cls, args, Value::Construction::kNewObj));
}

absl::Status Vm::Build(Value* target, const Value* state) {
  if (!target->is(ValueKind::kObject) && !target->is(ValueKind::kOrderedDict)) {
    return Error(absl::StrCat("BUILD on a ", ValueKindName(target->kind())));
  }
  if (target->state() != nullptr) return Error("BUILD applied twice to one object");
  if (target->is(ValueKind::kOrderedDict) && !state->is_dict())
    return Error("OrderedDict state is not a dict");
  ValueArena::SetState(target, state);
  return absl::OkStatus();
}

}  // namespace ucp::formats::torch::internal_pickle
