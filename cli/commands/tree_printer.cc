#include "cli/commands/tree_printer.h"

#include <charconv>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/base/status.h"

namespace ucp::cli {
namespace {

using formats::torch::TensorRef;
using formats::torch::Value;
using formats::torch::ValueKind;

std::string Shortest(double d) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, r.ptr);
}

// Elements print in their own precision: an f32 0.1 shows as 0.1, not 0.10000000149011612.
std::string ElementText(DType dtype, const std::byte* p) {
  double d = ElementAsDouble(dtype, p);
  if (DTypeLayout(dtype).kind != NumericLayout::Kind::kFloat || dtype == DType::kF64)
    return Shortest(d);
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, static_cast<float>(d));
  return std::string(buf, r.ptr);
}

std::string Qualname(const Value& g) { return absl::StrCat(g.module(), ".", g.name()); }

bool IsScalar(const Value& v) {
  switch (v.kind()) {
    case ValueKind::kNone:
    case ValueKind::kBool:
    case ValueKind::kInt:
    case ValueKind::kBigInt:
    case ValueKind::kFloat:
    case ValueKind::kStr:
    case ValueKind::kBytes:
    case ValueKind::kGlobal: return true;
    default: return false;
  }
}

// A sequence is shown on one line when it is short and holds only scalars.
bool IsFlat(const Value& v) {
  if (v.items().size() > 16) return false;
  for (const Value* item : v.items()) {
    if (!IsScalar(*item)) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> TreePrinter::TensorText(const TensorRef& t) {
  ++tensor_count_;
  std::string s = absl::StrCat("tensor ", DTypeName(t.dtype), " ", t.shape.ToString());
  if (t.requires_grad) absl::StrAppend(&s, " requires_grad");
  if (t.storage_offset != 0 || !t.IsContiguous() || t.storage->numel != t.NumElements()) {
    absl::StrAppend(&s, " (view of storage ", t.storage->key, " at ", t.storage_offset, ")");
  }
  if (values_ > 0 && t.NumElements() > 0) {
    UCP_ASSIGN_OR_RETURN(Buffer bytes, tensor_bytes_(t));
    std::vector<std::string> shown;
    const int64_t n = std::min<int64_t>(values_, t.NumElements());
    for (int64_t i = 0; i < n; ++i)
      shown.push_back(ElementText(t.dtype, bytes.data() + i * DTypeSize(t.dtype)));
    absl::StrAppend(&s, " = [", absl::StrJoin(shown, ", "), n < t.NumElements() ? ", ...]" : "]");
  } else if (values_ == 0 && tensor_bytes_) {
    UCP_RETURN_IF_ERROR(tensor_bytes_(t).status());  // --verify reads every tensor
  }
  return s;
}

absl::StatusOr<std::string> TreePrinter::Inline(const Value& v) {
  switch (v.kind()) {
    case ValueKind::kNone: return std::string("None");
    case ValueKind::kBool: return std::string(v.bool_value() ? "True" : "False");
    case ValueKind::kInt: return absl::StrCat(v.int_value());
    case ValueKind::kBigInt: return absl::StrCat("<", v.str().size(), "-byte int>");
    case ValueKind::kFloat: {
      std::string text = Shortest(v.float_value());  // Python repr: 1.0, not 1
      if (text.find_first_of(".en") == std::string::npos) text += ".0";
      return text;
    }
    case ValueKind::kStr: return absl::StrCat("'", absl::CEscape(v.str()), "'");
    case ValueKind::kBytes:
      return v.str().size() <= 32 ? absl::StrCat("b'", absl::CHexEscape(v.str()), "'")
                                  : absl::StrCat("<", v.str().size(), " bytes>");
    case ValueKind::kGlobal: return Qualname(v);
    case ValueKind::kTuple:
    case ValueKind::kList:
    case ValueKind::kSet:
    case ValueKind::kFrozenSet: {
      std::vector<std::string> parts;
      for (const Value* item : v.items()) {
        UCP_ASSIGN_OR_RETURN(std::string p, Inline(*item));
        parts.push_back(std::move(p));
      }
      std::string body = absl::StrJoin(parts, ", ");
      if (v.is(ValueKind::kTuple)) return absl::StrCat("(", body, parts.size() == 1 ? ",)" : ")");
      if (v.is(ValueKind::kList)) return absl::StrCat("[", body, "]");
      return absl::StrCat(v.is(ValueKind::kSet) ? "set(" : "frozenset(", "{", body, "})");
    }
    case ValueKind::kStorage: return absl::StrCat("storage ", v.storage()->key);
    case ValueKind::kTensor: return TensorText(v.tensor());
    default: return std::string("...");
  }
}

absl::Status TreePrinter::Line(const Value& v, int indent, const std::string& label) {
  std::string pad(indent * 2, ' ');
  std::string head = label.empty() ? pad : absl::StrCat(pad, label, ": ");
  const bool sequence = v.is_sequence() || v.is(ValueKind::kSet) || v.is(ValueKind::kFrozenSet);
  if (IsScalar(v) || v.is(ValueKind::kTensor) || v.is(ValueKind::kStorage) ||
      (sequence && IsFlat(v))) {
    UCP_ASSIGN_OR_RETURN(std::string text, Inline(v));
    out_ << head << text << "\n";
    return absl::OkStatus();
  }
  if (v.is(ValueKind::kObject)) {
    // torch.Size([61, 24]) and enums read best inline; other objects list their state below.
    std::string args;
    const Value* a = v.args();
    if (v.IsGlobal("torch", "Size") && a != nullptr && a->items().size() == 1 &&
        IsFlat(*a->items()[0])) {
      std::vector<std::string> dims;
      for (const Value* d : a->items()[0]->items()) {
        UCP_ASSIGN_OR_RETURN(std::string text, Inline(*d));
        dims.push_back(std::move(text));
      }
      args = absl::StrCat("([", absl::StrJoin(dims, ", "), "])");
    } else if (a != nullptr && IsFlat(*a)) {
      UCP_ASSIGN_OR_RETURN(args, Inline(*a));
      if (a->items().size() == 1)
        args = absl::StrCat(args.substr(0, args.size() - 2), ")");  // (x,) → (x)
    }
    out_ << head << Qualname(*v.cls()) << args << "\n";
    if (v.state() != nullptr) UCP_RETURN_IF_ERROR(Line(*v.state(), indent + 1, "state"));
    return absl::OkStatus();
  }
  int shown = 0;
  if (v.is_dict()) {
    out_ << head << (v.is(ValueKind::kOrderedDict) ? "OrderedDict" : "dict") << " ("
         << v.entries().size() << (v.entries().size() == 1 ? " key)" : " keys)") << "\n";
    for (const auto& [k, val] : v.entries()) {
      if (max_items_ > 0 && shown++ >= max_items_) {
        out_ << pad << "  ... " << v.entries().size() - max_items_
             << " more (--max-items 0 shows all)\n";
        break;
      }
      UCP_ASSIGN_OR_RETURN(std::string key, Inline(*k));
      if (k->is(ValueKind::kStr) && !k->str().empty()) key = k->str();
      UCP_RETURN_IF_ERROR(Line(*val, indent + 1, key));
    }
    if (v.state() != nullptr) UCP_RETURN_IF_ERROR(Line(*v.state(), indent + 1, "(attributes)"));
    return absl::OkStatus();
  }
  out_ << head << formats::torch::ValueKindName(v.kind()) << " (" << v.items().size()
       << " items)\n";
  for (size_t i = 0; i < v.items().size(); ++i) {
    if (max_items_ > 0 && shown++ >= max_items_) {
      out_ << pad << "  ... " << v.items().size() - max_items_
           << " more (--max-items 0 shows all)\n";
      break;
    }
    UCP_RETURN_IF_ERROR(Line(*v.items()[i], indent + 1, absl::StrCat("[", i, "]")));
  }
  return absl::OkStatus();
}

absl::Status TreePrinter::Print(const Value& root) { return Line(root, 0, ""); }

}  // namespace ucp::cli
