#include "formats/deepspeed/value_access.h"

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"

namespace ucp::formats::deepspeed {
namespace {

absl::Status WrongKind(const Value* v, absl::string_view expected, absl::string_view what) {
  return absl::DataLossError(
      absl::StrCat(what, ": expected ", expected, ", found ",
                   v == nullptr ? "nothing" : formats::torch::ValueKindName(v->kind())));
}

bool IsBuiltinGetattr(const Value* cls) {
  for (absl::string_view module : keys::kBuiltinModules) {
    if (cls->IsGlobal(module, keys::kGetattr)) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<const Value*> Require(const Value& dict, absl::string_view key,
                                     absl::string_view what) {
  const Value* v = dict.Get(key);
  if (v == nullptr) return absl::DataLossError(absl::StrCat(what, ": missing key '", key, "'"));
  return v;
}

const Value* GetByInt(const Value& dict, int64_t key) {
  if (!dict.is_dict()) return nullptr;
  for (const auto& [k, v] : dict.entries()) {
    if (k->is(ValueKind::kInt) && k->int_value() == key) return v;
  }
  return nullptr;
}

bool IsSet(const Value* v) {
  if (v == nullptr || v->is_none()) return false;
  if (v->is_dict()) return !v->entries().empty();
  if (v->is_sequence() || v->is(ValueKind::kSet)) return !v->items().empty();
  return true;
}

absl::StatusOr<int64_t> AsInt(const Value* v, absl::string_view what) {
  if (v == nullptr || !v->is(ValueKind::kInt)) return WrongKind(v, "int", what);
  return v->int_value();
}

absl::StatusOr<int64_t> AsIntIn(const Value* v, int64_t lo, int64_t hi, absl::string_view what) {
  UCP_ASSIGN_OR_RETURN(int64_t value, AsInt(v, what));
  if (value < lo || value > hi) {
    return absl::DataLossError(absl::StrCat(what, ": ", value, " is outside [", lo, ", ", hi, "]"));
  }
  return value;
}

absl::StatusOr<bool> AsBool(const Value* v, absl::string_view what) {
  if (v == nullptr || !v->is(ValueKind::kBool)) return WrongKind(v, "bool", what);
  return v->bool_value();
}

absl::StatusOr<double> AsNumber(const Value* v, absl::string_view what) {
  if (v != nullptr && v->is(ValueKind::kInt)) return static_cast<double>(v->int_value());
  if (v != nullptr && v->is(ValueKind::kFloat)) return v->float_value();
  return WrongKind(v, "number", what);
}

absl::StatusOr<std::string> AsStr(const Value* v, absl::string_view what) {
  if (v == nullptr || !v->is(ValueKind::kStr)) return WrongKind(v, "str", what);
  return v->str();
}

absl::StatusOr<absl::Span<const Value* const>> AsSequence(const Value* v, absl::string_view what) {
  if (v == nullptr || !v->is_sequence()) return WrongKind(v, "list", what);
  if (static_cast<int64_t>(v->items().size()) > kMaxCount) {
    return absl::DataLossError(absl::StrCat(what, ": ", v->items().size(), " items"));
  }
  return v->items();
}

absl::StatusOr<const Value*> AsDict(const Value* v, absl::string_view what) {
  if (v == nullptr || !v->is_dict()) return WrongKind(v, "dict", what);
  return v;
}

absl::StatusOr<std::vector<std::string>> AsStrList(const Value* v, absl::string_view what) {
  UCP_ASSIGN_OR_RETURN(auto items, AsSequence(v, what));
  std::vector<std::string> out;
  for (size_t i = 0; i < items.size(); ++i) {
    UCP_ASSIGN_OR_RETURN(std::string s, AsStr(items[i], absl::StrCat(what, "[", i, "]")));
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<std::vector<int64_t>> AsIntList(const Value* v, absl::string_view what) {
  UCP_ASSIGN_OR_RETURN(auto items, AsSequence(v, what));
  std::vector<int64_t> out;
  for (size_t i = 0; i < items.size(); ++i) {
    UCP_ASSIGN_OR_RETURN(int64_t n, AsInt(items[i], absl::StrCat(what, "[", i, "]")));
    out.push_back(n);
  }
  return out;
}

absl::StatusOr<const TensorRef*> AsTensor(const Value* v, absl::string_view what, bool flat) {
  if (v == nullptr || !v->is(ValueKind::kTensor)) return WrongKind(v, "tensor", what);
  const TensorRef& t = v->tensor();
  if (flat && (t.shape.rank() != 1 || !t.IsContiguous())) {
    return absl::DataLossError(
        absl::StrCat(what, ": expected a contiguous 1-D tensor, found shape ", t.shape.ToString()));
  }
  return &t;
}

absl::StatusOr<Shape> AsShape(const Value* v, absl::string_view what) {
  const Value* dims = v;
  if (v != nullptr && v->is(ValueKind::kObject) &&
      v->IsGlobal(keys::kTorchModule, keys::kTorchSize)) {
    if (v->args() == nullptr || v->args()->items().size() != 1) {
      return absl::DataLossError(absl::StrCat(what, ": torch.Size with unexpected arguments"));
    }
    dims = v->args()->items()[0];
  }
  if (dims == nullptr || !dims->is_sequence()) return WrongKind(v, "torch.Size", what);
  if (static_cast<int>(dims->items().size()) > kMaxRank) {
    return absl::DataLossError(absl::StrCat(what, ": shape of rank ", dims->items().size()));
  }
  std::vector<int64_t> out;
  for (size_t i = 0; i < dims->items().size(); ++i) {
    UCP_ASSIGN_OR_RETURN(int64_t d, AsIntIn(dims->items()[i], 0, kMaxTensorElements,
                                            absl::StrCat(what, " dim ", i)));
    out.push_back(d);
  }
  Shape shape(std::move(out));
  UCP_RETURN_IF_ERROR_CTX(shape.NumElements().status(), what);
  return shape;
}

absl::StatusOr<int> AsZeroStage(const Value* v, absl::string_view what) {
  const Value* value = v;
  // By value: ZeroStageEnum(2).
  if (v != nullptr && v->is(ValueKind::kObject) &&
      v->IsGlobal(keys::kZeroConfigModule, keys::kZeroStageEnum) && v->args() != nullptr &&
      v->args()->items().size() == 1) {
    value = v->args()->items()[0];
  }
  if (value != nullptr && value->is(ValueKind::kInt)) {
    UCP_ASSIGN_OR_RETURN(int64_t stage, AsIntIn(value, 0, 3, what));
    return static_cast<int>(stage);
  }
  // By name: getattr(ZeroStageEnum, 'gradients').
  if (v == nullptr || !v->is(ValueKind::kObject) || v->cls() == nullptr ||
      !IsBuiltinGetattr(v->cls()) || v->args() == nullptr || v->args()->items().size() != 2 ||
      !v->args()->items()[0]->IsGlobal(keys::kZeroConfigModule, keys::kZeroStageEnum) ||
      !v->args()->items()[1]->is(ValueKind::kStr)) {
    return WrongKind(v, "ZeroStageEnum", what);
  }
  const std::string& member = v->args()->items()[1]->str();
  for (int stage = 0; stage < 4; ++stage) {
    if (member == keys::kZeroStageNames[stage]) return stage;
  }
  if (member == keys::kZeroStageMaxAlias) return 3;
  return absl::DataLossError(absl::StrCat(what, ": unknown ZeroStageEnum member '", member, "'"));
}

absl::StatusOr<FragmentAddress> AsFragmentAddress(const Value* v, absl::string_view what) {
  if (v == nullptr || !v->IsGlobal(keys::kTensorFragmentModule, keys::kFragmentAddress)) {
    return WrongKind(v, "fragment_address", what);
  }
  FragmentAddress out;
  const Value* numel = nullptr;
  const Value* start = nullptr;
  if (v->state() != nullptr && v->state()->is_dict()) {
    numel = v->state()->Get(keys::kFragmentNumel);
    start = v->state()->Get(keys::kFragmentStart);
  } else if (v->args() != nullptr && v->args()->items().size() == 2) {
    numel = v->args()->items()[0];
    start = v->args()->items()[1];
  }
  UCP_ASSIGN_OR_RETURN(out.numel,
                       AsIntIn(numel, 0, kMaxTensorElements, absl::StrCat(what, ".numel")));
  UCP_ASSIGN_OR_RETURN(out.start,
                       AsIntIn(start, 0, kMaxTensorElements, absl::StrCat(what, ".start")));
  return out;
}

std::string Describe(const Value* v) {
  if (v == nullptr) return "nothing";
  switch (v->kind()) {
    case ValueKind::kInt: return absl::StrCat(v->int_value());
    case ValueKind::kFloat: return absl::StrCat(v->float_value());
    case ValueKind::kStr: return absl::StrCat("'", v->str(), "'");
    case ValueKind::kTensor:
      return absl::StrCat("tensor ", DTypeName(v->tensor().dtype), " ",
                          v->tensor().shape.ToString());
    default: return std::string(formats::torch::ValueKindName(v->kind()));
  }
}

}  // namespace ucp::formats::deepspeed
