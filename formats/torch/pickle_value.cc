#include "formats/torch/pickle_value.h"

namespace ucp::formats::torch {

absl::string_view ValueKindName(ValueKind kind) {
  switch (kind) {
    case ValueKind::kNone: return "None";
    case ValueKind::kBool: return "bool";
    case ValueKind::kInt: return "int";
    case ValueKind::kBigInt: return "int";
    case ValueKind::kFloat: return "float";
    case ValueKind::kStr: return "str";
    case ValueKind::kBytes: return "bytes";
    case ValueKind::kTuple: return "tuple";
    case ValueKind::kList: return "list";
    case ValueKind::kDict: return "dict";
    case ValueKind::kOrderedDict: return "OrderedDict";
    case ValueKind::kSet: return "set";
    case ValueKind::kFrozenSet: return "frozenset";
    case ValueKind::kGlobal: return "global";
    case ValueKind::kObject: return "object";
    case ValueKind::kStorage: return "storage";
    case ValueKind::kTensor: return "tensor";
  }
  return "?";
}

bool TensorRef::IsContiguous() const {
  for (int64_t d : shape.dims()) {
    if (d == 0) return true;  // no elements; also keeps the product below from overflowing
  }
  int64_t expected = 1;
  for (int i = shape.rank() - 1; i >= 0; --i) {
    if (shape.dim(i) != 1 && stride[i] != expected) return false;
    expected *= shape.dim(i);
  }
  return true;
}

int64_t TensorRef::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape.dims()) n *= d;
  return n;
}

const Value* Value::Get(absl::string_view key) const {
  if (!is_dict()) return nullptr;
  for (const auto& [k, v] : entries_) {
    if (k->kind_ == ValueKind::kStr && k->str_ == key) return v;
  }
  return nullptr;
}

bool Value::IsGlobal(absl::string_view module, absl::string_view name) const {
  if (kind_ == ValueKind::kObject) return cls_ != nullptr && cls_->IsGlobal(module, name);
  return kind_ == ValueKind::kGlobal && str_ == module && name_ == name;
}

Value* ValueArena::New(ValueKind kind) {
  Value& v = values_.emplace_back();
  v.kind_ = kind;
  return &v;
}

Value* ValueArena::None() { return New(ValueKind::kNone); }
Value* ValueArena::Bool(bool b) {
  Value* v = New(ValueKind::kBool);
  v->int_ = b;
  return v;
}
Value* ValueArena::Int(int64_t i) {
  Value* v = New(ValueKind::kInt);
  v->int_ = i;
  return v;
}
Value* ValueArena::BigInt(std::string bytes) {
  Value* v = New(ValueKind::kBigInt);
  v->str_ = std::move(bytes);
  return v;
}
Value* ValueArena::Float(double f) {
  Value* v = New(ValueKind::kFloat);
  v->float_ = f;
  return v;
}
Value* ValueArena::Str(std::string s) {
  Value* v = New(ValueKind::kStr);
  v->str_ = std::move(s);
  return v;
}
Value* ValueArena::Bytes(std::string s) {
  Value* v = New(ValueKind::kBytes);
  v->str_ = std::move(s);
  return v;
}
Value* ValueArena::Tuple(std::vector<const Value*> items) {
  Value* v = New(ValueKind::kTuple);
  v->items_ = std::move(items);
  return v;
}
Value* ValueArena::List(std::vector<const Value*> items) {
  Value* v = New(ValueKind::kList);
  v->items_ = std::move(items);
  return v;
}
Value* ValueArena::Dict() { return New(ValueKind::kDict); }
Value* ValueArena::OrderedDict() { return New(ValueKind::kOrderedDict); }
Value* ValueArena::Set(ValueKind kind) { return New(kind); }
Value* ValueArena::Global(std::string module, std::string name) {
  Value* v = New(ValueKind::kGlobal);
  v->str_ = std::move(module);
  v->name_ = std::move(name);
  return v;
}
Value* ValueArena::Object(const Value* cls, const Value* args, Value::Construction construction) {
  Value* v = New(ValueKind::kObject);
  v->cls_ = cls;
  v->args_ = args;
  v->construction_ = construction;
  return v;
}
Value* ValueArena::Storage(const StorageRef* storage) {
  Value* v = New(ValueKind::kStorage);
  v->storage_ = storage;
  return v;
}
Value* ValueArena::Tensor(TensorRef tensor) {
  Value* v = New(ValueKind::kTensor);
  v->tensor_ = &tensors_.emplace_back(std::move(tensor));
  return v;
}
StorageRef* ValueArena::NewStorage(StorageRef storage) {
  return &storages_.emplace_back(std::move(storage));
}

void ValueArena::Append(Value* seq, const Value* item) { seq->items_.push_back(item); }
void ValueArena::SetItem(Value* dict, const Value* key, const Value* value) {
  dict->entries_.emplace_back(key, value);
}
void ValueArena::ReplaceValue(Value* dict, size_t index, const Value* value) {
  dict->entries_[index].second = value;
}
void ValueArena::SetState(Value* obj, const Value* state) { obj->state_ = state; }

}  // namespace ucp::formats::torch
