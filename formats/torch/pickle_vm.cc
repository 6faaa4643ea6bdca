#include "formats/torch/pickle_vm.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "formats/base/status.h"
#include "formats/torch/pickle_opcodes.h"
#include "formats/torch/pickle_tree_check.h"

namespace ucp::formats::torch::internal_pickle {
namespace {

// Structural UTF-8 check (lead byte, continuation bytes, length), as Python's decoder requires.
bool ValidUtf8(absl::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t extra;
    if (c < 0x80) {
      extra = 0;
    } else if ((c >> 5) == 0x6) {
      extra = 1;
    } else if ((c >> 4) == 0xE) {
      extra = 2;
    } else if ((c >> 3) == 0x1E) {
      extra = 3;
    } else {
      return false;
    }
    if (n - i - 1 < extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    }
    i += extra + 1;
  }
  return true;
}

}  // namespace

absl::Status Vm::Error(absl::string_view message) const {
  return absl::DataLossError(
      absl::StrFormat("pickle offset %d (opcode %s): %s", op_pos_, OpcodeName(op_), message));
}

absl::StatusOr<absl::string_view> Vm::Take(uint64_t n) {
  if (!Has(n)) return Error(absl::StrCat("needs ", n, " bytes, ", in_.size() - pos_, " left"));
  absl::string_view s(reinterpret_cast<const char*>(in_.data()) + pos_, n);
  pos_ += n;
  return s;
}

absl::StatusOr<uint64_t> Vm::TakeUint(int bytes) {
  UCP_ASSIGN_OR_RETURN(absl::string_view s, Take(bytes));
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

absl::StatusOr<absl::string_view> Vm::TakeLine() {
  constexpr size_t kMaxLine = 4096;
  const char* begin = reinterpret_cast<const char*>(in_.data()) + pos_;
  size_t left = in_.size() - pos_;
  const void* nl = std::memchr(begin, '\n', std::min(left, kMaxLine));
  if (nl == nullptr) return Error("unterminated or over-long text line");
  size_t len = static_cast<const char*>(nl) - begin;
  pos_ += len + 1;
  return absl::string_view(begin, len);
}

absl::Status Vm::Push(Value* v) {
  if (static_cast<int64_t>(stack_.size()) >= limits_.max_stack)
    return Error("stack limit exceeded");
  stack_.push_back(v);
  return absl::OkStatus();
}

absl::StatusOr<Value*> Vm::Pop() {
  size_t floor = marks_.empty() ? 0 : marks_.back();
  if (stack_.size() <= floor) return Error("stack underflow");
  Value* v = stack_.back();
  stack_.pop_back();
  return v;
}

absl::StatusOr<Value*> Vm::Top() {
  size_t floor = marks_.empty() ? 0 : marks_.back();
  if (stack_.size() <= floor) return Error("stack underflow");
  return stack_.back();
}

absl::StatusOr<std::vector<Value*>> Vm::PopMark() {
  if (marks_.empty()) return Error("no MARK on the stack");
  size_t mark = marks_.back();
  marks_.pop_back();
  std::vector<Value*> items(stack_.begin() + mark, stack_.end());
  stack_.resize(mark);
  return items;
}

absl::StatusOr<Value*> Vm::NewValue(Value* v) {
  if (static_cast<int64_t>(arena_.size() - arena_start_) > limits_.max_values) {
    return Error("too many values");
  }
  return v;
}

absl::Status Vm::PushLong(absl::string_view le) {
  if (le.size() <= 8) {
    uint64_t v = 0;
    for (size_t i = le.size(); i-- > 0;) v = (v << 8) | static_cast<unsigned char>(le[i]);
    if (!le.empty() && le.size() < 8 && (static_cast<unsigned char>(le.back()) & 0x80)) {
      v |= ~uint64_t{0} << (8 * le.size());  // sign-extend
    }
    return PushInt(static_cast<int64_t>(v));
  }
  UCP_ASSIGN_OR_RETURN(Value * n, NewValue(arena_.BigInt(std::string(le))));
  return Push(n);
}

absl::Status Vm::PushStr(absl::string_view bytes) {
  if (!ValidUtf8(bytes)) return Error("string is not valid UTF-8");
  UCP_ASSIGN_OR_RETURN(Value * n, NewValue(arena_.Str(std::string(bytes))));
  return Push(n);
}

absl::Status Vm::PushBytes(absl::string_view bytes) {
  UCP_ASSIGN_OR_RETURN(Value * n, NewValue(arena_.Bytes(std::string(bytes))));
  return Push(n);
}

absl::Status Vm::PushGlobal(std::string module, std::string name) {
  if (!LookupGlobal(module, name)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "pickle offset %d: global %s.%s is not on ucp's allow-list (nothing was executed)", op_pos_,
        module, name));
  }
  UCP_ASSIGN_OR_RETURN(Value * n, NewValue(arena_.Global(std::move(module), std::move(name))));
  return Push(n);
}

absl::Status Vm::MemoPut(uint64_t index) {
  UCP_ASSIGN_OR_RETURN(Value * top, Top());
  if (static_cast<int64_t>(memo_.size()) >= limits_.max_memo && !memo_.contains(index)) {
    return Error("memo limit exceeded");
  }
  memo_[index] = top;
  return absl::OkStatus();
}

absl::Status Vm::MemoGet(uint64_t index) {
  auto it = memo_.find(index);
  if (it == memo_.end()) return Error(absl::StrCat("memo key ", index, " was never stored"));
  return Push(it->second);
}

absl::Status Vm::Append(Value* seq, absl::Span<Value* const> items) {
  if (seq->kind() != ValueKind::kList) {
    return Error(absl::StrCat("APPEND to a ", ValueKindName(seq->kind()), ", not a list"));
  }
  for (Value* item : items) ValueArena::Append(seq, item);
  return absl::OkStatus();
}

absl::Status Vm::AddItems(Value* set, absl::Span<Value* const> items) {
  if (set->kind() != ValueKind::kSet) return Error("ADDITEMS to a non-set");
  for (Value* item : items) ValueArena::Append(set, item);
  return absl::OkStatus();
}

absl::Status Vm::SetItems(Value* dict, absl::Span<Value* const> kv) {
  if (!dict->is_dict()) {
    return Error(absl::StrCat("SETITEM on a ", ValueKindName(dict->kind()), ", not a dict"));
  }
  if (kv.size() % 2 != 0) return Error("odd number of items for SETITEMS");
  DictIndex& index = dict_index_[dict];
  for (size_t i = 0; i < kv.size(); i += 2) {
    const Value* key = kv[i];
    size_t position = dict->entries().size();
    bool found = false;
    if (key->is(ValueKind::kStr)) {
      auto [it, inserted] = index.str_keys.try_emplace(key->str(), position);
      found = !inserted;
      position = it->second;
    } else if (key->is(ValueKind::kInt) || key->is(ValueKind::kBool)) {
      auto [it, inserted] = index.int_keys.try_emplace(key->int_value(), position);
      found = !inserted;
      position = it->second;
    }
    if (found) {
      ValueArena::ReplaceValue(dict, position, kv[i + 1]);
    } else {
      ValueArena::SetItem(dict, key, kv[i + 1]);
    }
  }
  return absl::OkStatus();
}

absl::Status Vm::Step(bool* stop) {
  op_pos_ = pos_;
  op_ = static_cast<uint8_t>(in_[pos_++]);
  switch (op_) {
    case kProto: {
      UCP_ASSIGN_OR_RETURN(uint64_t proto, TakeUint(1));
      if (proto > 5) return Error(absl::StrCat("unsupported protocol ", proto));
      return absl::OkStatus();
    }
    case kFrame: return TakeUint(8).status();  // framing is advisory; opcodes follow inline
    case kStop: *stop = true; return absl::OkStatus();
    case kMark:
      if (static_cast<int>(marks_.size()) >= limits_.max_depth) return Error("MARKs nest too deep");
      marks_.push_back(stack_.size());
      return absl::OkStatus();
    case kPop: return Pop().status();
    case kPopMark: return PopMark().status();
    case kDup: {
      UCP_ASSIGN_OR_RETURN(Value * top, Top());
      return Push(top);
    }
    case kNone: {
      UCP_ASSIGN_OR_RETURN(Value * n, NewValue(arena_.None()));
      return Push(n);
    }
    case kNewTrue:
    case kNewFalse: {
      UCP_ASSIGN_OR_RETURN(Value * n, NewValue(arena_.Bool(op_ == kNewTrue)));
      return Push(n);
    }
    case kBinInt1: {
      UCP_ASSIGN_OR_RETURN(uint64_t v, TakeUint(1));
      return PushInt(static_cast<int64_t>(v));
    }
    case kBinInt2: {
      UCP_ASSIGN_OR_RETURN(uint64_t v, TakeUint(2));
      return PushInt(static_cast<int64_t>(v));
    }
    case kBinInt: {
      UCP_ASSIGN_OR_RETURN(uint64_t v, TakeUint(4));
      return PushInt(static_cast<int32_t>(static_cast<uint32_t>(v)));
    }
    case kLong1:
    case kLong4: {
      UCP_ASSIGN_OR_RETURN(uint64_t n, TakeUint(op_ == kLong1 ? 1 : 4));
      UCP_ASSIGN_OR_RETURN(absl::string_view bytes, Take(n));
      return PushLong(bytes);
    }
    case kInt:
    case kLong: {
      UCP_ASSIGN_OR_RETURN(absl::string_view line, TakeLine());
      if (op_ == kLong && !line.empty() && line.back() == 'L') line.remove_suffix(1);
      if (op_ == kInt && (line == "00" || line == "01")) {
        UCP_ASSIGN_OR_RETURN(Value * n, NewValue(arena_.Bool(line == "01")));
        return Push(n);
      }
      int64_t v;
      if (!absl::SimpleAtoi(line, &v)) return Error("integer text that does not fit 64 bits");
      return PushInt(v);
    }
    case kBinFloat: {
      UCP_ASSIGN_OR_RETURN(absl::string_view b, Take(8));
      uint64_t bits = 0;
      for (char c : b) bits = (bits << 8) | static_cast<unsigned char>(c);  // big-endian
      double d;
      std::memcpy(&d, &bits, sizeof d);
      UCP_ASSIGN_OR_RETURN(Value * n, NewValue(arena_.Float(d)));
      return Push(n);
    }
    case kFloat: {
      UCP_ASSIGN_OR_RETURN(absl::string_view line, TakeLine());
      double d;
      if (!absl::SimpleAtod(line, &d)) return Error("malformed float text");
      UCP_ASSIGN_OR_RETURN(Value * n, NewValue(arena_.Float(d)));
      return Push(n);
    }
    case kShortBinUnicode:
    case kBinUnicode:
    case kBinUnicode8: {
      UCP_ASSIGN_OR_RETURN(uint64_t n, TakeUint(op_ == kShortBinUnicode ? 1
                                                : op_ == kBinUnicode    ? 4
                                                                        : 8));
      UCP_ASSIGN_OR_RETURN(absl::string_view bytes, Take(n));
      return PushStr(bytes);
    }
    case kShortBinBytes:
    case kBinBytes:
    case kBinBytes8: {
      UCP_ASSIGN_OR_RETURN(uint64_t n, TakeUint(op_ == kShortBinBytes ? 1
                                                : op_ == kBinBytes    ? 4
                                                                      : 8));
      UCP_ASSIGN_OR_RETURN(absl::string_view bytes, Take(n));
      return PushBytes(bytes);
    }
    case kShortBinString:
    case kBinString: {  // Python 2 str; torch never writes it. Read as bytes.
      UCP_ASSIGN_OR_RETURN(uint64_t n, TakeUint(op_ == kShortBinString ? 1 : 4));
      UCP_ASSIGN_OR_RETURN(absl::string_view bytes, Take(n));
      return PushBytes(bytes);
    }
    case kEmptyTuple:
    case kTuple1:
    case kTuple2:
    case kTuple3: {
      size_t n = op_ == kEmptyTuple ? 0 : op_ - kTuple1 + 1;
      std::vector<const Value*> items(n);
      for (size_t i = n; i-- > 0;) {
        UCP_ASSIGN_OR_RETURN(items[i], Pop());
      }
      UCP_ASSIGN_OR_RETURN(Value * t, NewValue(arena_.Tuple(std::move(items))));
      return Push(t);
    }
    case kTuple: {
      UCP_ASSIGN_OR_RETURN(std::vector<Value*> items, PopMark());
      UCP_ASSIGN_OR_RETURN(Value * t, NewValue(arena_.Tuple({items.begin(), items.end()})));
      return Push(t);
    }
    case kEmptyList: {
      UCP_ASSIGN_OR_RETURN(Value * l, NewValue(arena_.List()));
      return Push(l);
    }
    case kList: {
      UCP_ASSIGN_OR_RETURN(std::vector<Value*> items, PopMark());
      UCP_ASSIGN_OR_RETURN(Value * l, NewValue(arena_.List({items.begin(), items.end()})));
      return Push(l);
    }
    case kAppend: {
      UCP_ASSIGN_OR_RETURN(Value * item, Pop());
      UCP_ASSIGN_OR_RETURN(Value * list, Top());
      return Append(list, {&item, 1});
    }
    case kAppends: {
      UCP_ASSIGN_OR_RETURN(std::vector<Value*> items, PopMark());
      UCP_ASSIGN_OR_RETURN(Value * list, Top());
      return Append(list, items);
    }
    case kEmptyDict: {
      UCP_ASSIGN_OR_RETURN(Value * d, NewValue(arena_.Dict()));
      return Push(d);
    }
    case kDict: {
      UCP_ASSIGN_OR_RETURN(std::vector<Value*> kv, PopMark());
      UCP_ASSIGN_OR_RETURN(Value * d, NewValue(arena_.Dict()));
      UCP_RETURN_IF_ERROR(SetItems(d, kv));
      return Push(d);
    }
    case kSetItem: {
      UCP_ASSIGN_OR_RETURN(Value * value, Pop());
      UCP_ASSIGN_OR_RETURN(Value * key, Pop());
      UCP_ASSIGN_OR_RETURN(Value * dict, Top());
      Value* kv[2] = {key, value};
      return SetItems(dict, kv);
    }
    case kSetItems: {
      UCP_ASSIGN_OR_RETURN(std::vector<Value*> kv, PopMark());
      UCP_ASSIGN_OR_RETURN(Value * dict, Top());
      return SetItems(dict, kv);
    }
    case kEmptySet: {
      UCP_ASSIGN_OR_RETURN(Value * set, NewValue(arena_.Set()));
      return Push(set);
    }
    case kAddItems: {
      UCP_ASSIGN_OR_RETURN(std::vector<Value*> items, PopMark());
      UCP_ASSIGN_OR_RETURN(Value * set, Top());
      return AddItems(set, items);
    }
    case kFrozenSet: {
      UCP_ASSIGN_OR_RETURN(std::vector<Value*> items, PopMark());
      UCP_ASSIGN_OR_RETURN(Value * set, NewValue(arena_.Set(ValueKind::kFrozenSet)));
      for (Value* item : items) ValueArena::Append(set, item);
      return Push(set);
    }
    case kGlobal: {
      UCP_ASSIGN_OR_RETURN(absl::string_view module, TakeLine());
      UCP_ASSIGN_OR_RETURN(absl::string_view name, TakeLine());
      return PushGlobal(std::string(module), std::string(name));
    }
    case kStackGlobal: {
      UCP_ASSIGN_OR_RETURN(Value * name, Pop());
      UCP_ASSIGN_OR_RETURN(Value * module, Pop());
      if (!name->is(ValueKind::kStr) || !module->is(ValueKind::kStr))
        return Error("STACK_GLOBAL needs two strings");
      return PushGlobal(module->str(), name->str());
    }
    case kBinPut:
    case kLongBinPut: {
      UCP_ASSIGN_OR_RETURN(uint64_t index, TakeUint(op_ == kBinPut ? 1 : 4));
      return MemoPut(index);
    }
    case kMemoize: return MemoPut(memo_.size());
    case kPut: {
      UCP_ASSIGN_OR_RETURN(absl::string_view line, TakeLine());
      uint64_t index;
      if (!absl::SimpleAtoi(line, &index)) return Error("malformed PUT index");
      return MemoPut(index);
    }
    case kBinGet:
    case kLongBinGet: {
      UCP_ASSIGN_OR_RETURN(uint64_t index, TakeUint(op_ == kBinGet ? 1 : 4));
      return MemoGet(index);
    }
    case kGet: {
      UCP_ASSIGN_OR_RETURN(absl::string_view line, TakeLine());
      uint64_t index;
      if (!absl::SimpleAtoi(line, &index)) return Error("malformed GET index");
      return MemoGet(index);
    }
    case kBinPersId: {
      UCP_ASSIGN_OR_RETURN(Value * pid, Pop());
      UCP_ASSIGN_OR_RETURN(Value * storage, PersistentLoad(pid));
      return Push(storage);
    }
    case kReduce: {
      UCP_ASSIGN_OR_RETURN(Value * args, Pop());
      UCP_ASSIGN_OR_RETURN(Value * callable, Pop());
      UCP_ASSIGN_OR_RETURN(Value * result, Reduce(callable, args));
      return Push(result);
    }
    case kNewObj: {
      UCP_ASSIGN_OR_RETURN(Value * args, Pop());
      UCP_ASSIGN_OR_RETURN(Value * cls, Pop());
      UCP_ASSIGN_OR_RETURN(Value * result, NewObj(cls, args));
      return Push(result);
    }
    case kNewObjEx: {
      UCP_ASSIGN_OR_RETURN(Value * kwargs, Pop());
      UCP_ASSIGN_OR_RETURN(Value * args, Pop());
      UCP_ASSIGN_OR_RETURN(Value * cls, Pop());
      if (!kwargs->is_dict() || !kwargs->entries().empty())
        return Error("NEWOBJ_EX with keyword arguments");
      UCP_ASSIGN_OR_RETURN(Value * result, NewObj(cls, args));
      return Push(result);
    }
    case kBuild: {
      UCP_ASSIGN_OR_RETURN(Value * state, Pop());
      UCP_ASSIGN_OR_RETURN(Value * target, Top());
      return Build(target, state);
    }
    default:
      return absl::UnimplementedError(
          absl::StrFormat("pickle offset %d: opcode %s is not supported by ucp's pickle reader",
                          op_pos_, OpcodeName(op_)));
  }
}

absl::StatusOr<const Value*> Vm::Run() {
  bool stop = false;
  while (!stop) {
    if (pos_ >= in_.size())
      return absl::DataLossError(absl::StrCat("pickle ends at offset ", pos_, " without STOP"));
    UCP_RETURN_IF_ERROR(Step(&stop));
  }
  if (stack_.size() != 1 || !marks_.empty())
    return Error("STOP with a stack that does not hold exactly one value");
  if (pos_ != in_.size()) {
    return absl::DataLossError(
        absl::StrCat("pickle has ", in_.size() - pos_, " trailing bytes after STOP"));
  }
  const Value* root = stack_.back();
  UCP_RETURN_IF_ERROR(CheckTreeShape(*root, limits_.max_depth, limits_.max_expanded_values));
  return root;
}

}  // namespace ucp::formats::torch::internal_pickle
