#include "formats/torch/value_json.h"

#include <cmath>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace ucp::formats::torch {
namespace {

using Json = nlohmann::json;

std::string Hex(const std::string& bytes) { return absl::BytesToHexString(bytes); }

Json StorageJson(const StorageRef& s) {
  return Json{{"key", s.key},
              {"dtype", DTypeName(s.dtype)},
              {"numel", s.numel},
              {"location", s.location},
              {"untyped", s.untyped}};
}

class Converter {
 public:
  explicit Converter(const std::function<void(const TensorRef&, Json&)>& on_tensor)
      : on_tensor_(on_tensor) {}

  Json Convert(const Value& v) {
    switch (v.kind()) {
      case ValueKind::kNone: return nullptr;
      case ValueKind::kBool: return v.bool_value();
      case ValueKind::kInt: return v.int_value();
      case ValueKind::kBigInt: return Json{{"bigint", Hex(v.str())}};
      case ValueKind::kFloat: {
        double d = v.float_value();
        if (std::isnan(d)) return Json{{"float", "nan"}};
        if (std::isinf(d)) return Json{{"float", d > 0 ? "inf" : "-inf"}};
        return d;
      }
      case ValueKind::kStr: return v.str();
      case ValueKind::kBytes: return Json{{"bytes", Hex(v.str())}};
      case ValueKind::kTuple: return Json{{"tuple", Items(v)}};
      case ValueKind::kList: return Items(v);
      case ValueKind::kSet: return Json{{"set", Items(v)}};
      case ValueKind::kFrozenSet: return Json{{"frozenset", Items(v)}};
      case ValueKind::kDict: return Json{{"dict", Entries(v)}};
      case ValueKind::kOrderedDict: {
        Json j{{"odict", Entries(v)}};
        if (v.state()) j["state"] = Convert(*v.state());
        return j;
      }
      case ValueKind::kGlobal: return Json{{"global", absl::StrCat(v.module(), ".", v.name())}};
      case ValueKind::kObject: {
        Json j{{"object", v.cls() ? absl::StrCat(v.cls()->module(), ".", v.cls()->name()) : ""},
               {"new", v.construction() == Value::Construction::kNewObj},
               {"args", v.args() ? Items(*v.args()) : Json::array()}};
        if (v.state()) j["state"] = Convert(*v.state());
        return j;
      }
      case ValueKind::kStorage: return Json{{"storage", StorageJson(*v.storage())}};
      case ValueKind::kTensor: return Tensor(v.tensor());
    }
    return nullptr;
  }

 private:
  Json Items(const Value& v) {
    Json a = Json::array();
    for (const Value* item : v.items()) a.push_back(Convert(*item));
    return a;
  }
  Json Entries(const Value& v) {
    Json a = Json::array();
    for (const auto& [k, val] : v.entries()) a.push_back(Json::array({Convert(*k), Convert(*val)}));
    return a;
  }
  Json Tensor(const TensorRef& t) {
    Json j{{"dtype", DTypeName(t.dtype)},
           {"shape", std::vector<int64_t>(t.shape.dims().begin(), t.shape.dims().end())},
           {"stride", t.stride},
           {"offset", t.storage_offset},
           {"storage", StorageJson(*t.storage)},
           {"requires_grad", t.requires_grad}};
    if (t.rebuild == TensorRef::Rebuild::kParameter) j["parameter"] = true;
    if (t.python_type) j["python_type"] = Convert(*t.python_type);
    if (t.python_state) j["python_state"] = Convert(*t.python_state);
    if (t.metadata) j["metadata"] = Convert(*t.metadata);
    if (on_tensor_) on_tensor_(t, j);
    return Json{{"tensor", std::move(j)}};
  }

  const std::function<void(const TensorRef&, Json&)>& on_tensor_;
};

}  // namespace

nlohmann::json ValueToJson(
    const Value& v, const std::function<void(const TensorRef&, nlohmann::json&)>& on_tensor) {
  Converter c(on_tensor);
  return c.Convert(v);
}

}  // namespace ucp::formats::torch
