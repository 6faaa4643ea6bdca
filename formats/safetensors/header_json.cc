#include "formats/safetensors/header_json.h"

#include <algorithm>
#include <array>
#include <iterator>
#include <limits>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/base/checked_math.h"
#include "formats/base/shape.h"
#include "formats/base/status.h"

namespace ucp::internal_safetensors {
namespace {

// dtypes the safetensors spec names but ucp has no DType for: a valid file that ucp cannot hold
// (Unimplemented), unlike a name that no writer produces (DataLoss).
constexpr std::array<absl::string_view, 8> kSpecDTypesWithoutUcpType = {
    "U16", "U32", "U64", "C64", "F4", "F6_E2M3", "F6_E3M2", "F8_E8M0"};

// JSON's two-character escapes: the letter after the backslash and the byte it stands for.
constexpr std::pair<char, char> kShortEscapes[] = {{'"', '"'},  {'\\', '\\'}, {'/', '/'},
                                                   {'b', '\b'}, {'f', '\f'},  {'n', '\n'},
                                                   {'r', '\r'}, {'t', '\t'}};

constexpr size_t kNoError = std::numeric_limits<size_t>::max();

// Offset of the first byte that starts an invalid UTF-8 sequence, or kNoError.
size_t FirstInvalidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto lead = static_cast<unsigned char>(s[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length;
    uint32_t code_point;
    uint32_t smallest;  // below this the encoding is overlong
    if ((lead & 0xE0) == 0xC0) {
      length = 2, code_point = lead & 0x1F, smallest = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, code_point = lead & 0x0F, smallest = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, code_point = lead & 0x07, smallest = 0x10000;
    } else {
      return i;
    }
    if (s.size() - i < length) return i;
    for (size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(s[i + k]);
      if ((next & 0xC0) != 0x80) return i;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    if (code_point < smallest || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return i;
    }
    i += length;
  }
  return kNoError;
}

void AppendUtf8(uint32_t code_point, std::string& out) {
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}

constexpr char kHexDigits[] = "0123456789abcdef";

void AppendHexByte(unsigned char c, std::string& out) {
  out.push_back(kHexDigits[c >> 4]);
  out.push_back(kHexDigits[c & 0xF]);
}

// A recursive-descent parser for the fixed, three-level schema. Each level has its own method,
// so the call depth is bounded by the schema, not by the input.
class Parser {
 public:
  explicit Parser(absl::string_view text) : text_(text) {}

  absl::StatusOr<ParsedHeader> Parse() {
    if (text_.empty() || text_[0] != '{') {
      return Fail(absl::StrCat("the header does not start with '{' (found ", Found(), ")"));
    }
    ParsedHeader out;
    absl::flat_hash_set<std::string> names;
    bool has_metadata = false;
    UCP_RETURN_IF_ERROR(Members("the header", [&](std::string key) -> absl::Status {
      if (key == kMetadataKey) {
        if (has_metadata) return Fail("duplicate key \"__metadata__\"");
        has_metadata = true;
        return Metadata(out);
      }
      if (!names.insert(key).second) {
        return Fail(absl::StrCat("duplicate tensor name ", QuoteForMessage(key)));
      }
      return Entry(std::move(key), out);
    }));
    SkipSpace();
    if (pos_ != text_.size()) {
      return Fail(absl::StrCat("unexpected ", Found(), " after the header object"));
    }
    return out;
  }

 private:
  absl::Status Fail(absl::string_view what) const {
    return absl::DataLossError(absl::StrCat("header JSON at byte ", pos_, ": ", what));
  }

  // The byte at pos_, for messages.
  std::string Found() const {
    if (pos_ >= text_.size()) return "the end of the header";
    const auto c = static_cast<unsigned char>(text_[pos_]);
    std::string out = "'";
    if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      AppendHexByte(c, out);
    }
    return out + "'";
  }

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  // The next non-space byte, or -1 at the end.
  int Peek() {
    SkipSpace();
    return pos_ < text_.size() ? static_cast<unsigned char>(text_[pos_]) : -1;
  }

  bool Consume(char c) {
    if (Peek() != static_cast<unsigned char>(c)) return false;
    ++pos_;
    return true;
  }

  // Parses `{"key": value, ...}`; `member(key)` is called positioned at each value.
  template <typename MemberFn>
  absl::Status Members(absl::string_view what, MemberFn&& member) {
    if (Peek() != '{') return Fail(absl::StrCat(what, " is not an object (found ", Found(), ")"));
    ++pos_;
    if (Consume('}')) return absl::OkStatus();
    while (true) {
      if (Peek() != '"') {
        return Fail(absl::StrCat("expected a key string in ", what, ", found ", Found()));
      }
      UCP_ASSIGN_OR_RETURN(std::string key, String());
      if (!Consume(':')) return Fail(absl::StrCat("expected ':' after a key, found ", Found()));
      UCP_RETURN_IF_ERROR(member(std::move(key)));
      if (Consume(',')) continue;
      if (Consume('}')) return absl::OkStatus();
      return Fail(absl::StrCat("expected ',' or '}' in ", what, ", found ", Found()));
    }
  }

  // A string literal starting at pos_ (a '"', checked by the caller).
  absl::StatusOr<std::string> String() {
    ++pos_;
    std::string out;
    while (true) {
      if (pos_ >= text_.size()) return Fail("unterminated string");
      const char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) return Fail("control byte inside a string");
      if (c == '\\') {
        UCP_RETURN_IF_ERROR(Escape(out));
      } else {
        out.push_back(c);
        ++pos_;
      }
    }
  }

  // The escape sequence at pos_ (a '\\').
  absl::Status Escape(std::string& out) {
    if (text_.size() - pos_ < 2) return Fail("unterminated escape");
    const char kind = text_[pos_ + 1];
    pos_ += 2;
    for (const auto& [letter, byte] : kShortEscapes) {
      if (kind == letter) {
        out.push_back(byte);
        return absl::OkStatus();
      }
    }
    if (kind != 'u') {
      pos_ -= 2;
      return Fail("invalid escape sequence");
    }
    UCP_ASSIGN_OR_RETURN(uint32_t code_point, Hex4());
    if (code_point >= 0xDC00 && code_point <= 0xDFFF) return Fail("unpaired low surrogate escape");
    if (code_point >= 0xD800 && code_point <= 0xDBFF) {
      if (text_.size() - pos_ < 2 || text_[pos_] != '\\' || text_[pos_ + 1] != 'u') {
        return Fail("unpaired high surrogate escape");
      }
      pos_ += 2;
      UCP_ASSIGN_OR_RETURN(uint32_t low, Hex4());
      if (low < 0xDC00 || low > 0xDFFF) return Fail("unpaired high surrogate escape");
      code_point = 0x10000 + ((code_point - 0xD800) << 10) + (low - 0xDC00);
    }
    AppendUtf8(code_point, out);
    return absl::OkStatus();
  }

  absl::StatusOr<uint32_t> Hex4() {
    if (text_.size() - pos_ < 4) return Fail("truncated \\u escape");
    uint32_t value = 0;
    for (size_t i = 0; i < 4; ++i) {
      const char c = text_[pos_ + i];
      uint32_t digit;
      if (c >= '0' && c <= '9') {
        digit = static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        digit = static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        digit = static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return Fail("invalid hex digit in a \\u escape");
      }
      value = value * 16 + digit;
    }
    pos_ += 4;
    return value;
  }

  // A non-negative JSON integer that fits in 64 bits.
  absl::StatusOr<uint64_t> UInt(absl::string_view what) {
    const int first = Peek();
    if (first == '-') return Fail(absl::StrCat(what, " is negative"));
    if (first < '0' || first > '9') {
      return Fail(absl::StrCat(what, " is not an integer (found ", Found(), ")"));
    }
    const size_t start = pos_;
    uint64_t value = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      std::optional<uint64_t> times_ten = CheckedMul(value, uint64_t{10});
      std::optional<uint64_t> next;
      if (times_ten) next = CheckedAdd(*times_ten, static_cast<uint64_t>(text_[pos_] - '0'));
      if (!next) return Fail(absl::StrCat(what, " does not fit in 64 bits"));
      value = *next;
      ++pos_;
    }
    if (text_[start] == '0' && pos_ - start > 1) {
      return Fail(absl::StrCat(what, " has a leading zero"));
    }
    if (pos_ < text_.size() && (text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E')) {
      return Fail(absl::StrCat(what, " is not an integer"));
    }
    return value;
  }

  // `[uint, ...]` with at most `max_count` elements.
  absl::Status UIntArray(absl::string_view what, size_t max_count, std::vector<uint64_t>& out) {
    if (Peek() != '[') return Fail(absl::StrCat(what, " is not an array (found ", Found(), ")"));
    ++pos_;
    if (Consume(']')) return absl::OkStatus();
    while (true) {
      if (out.size() == max_count) {
        return Fail(absl::StrCat(what, " has more than ", max_count, " elements"));
      }
      UCP_ASSIGN_OR_RETURN(uint64_t value, UInt(absl::StrCat("an element of ", what)));
      out.push_back(value);
      if (Consume(',')) continue;
      if (Consume(']')) return absl::OkStatus();
      return Fail(absl::StrCat("expected ',' or ']' in ", what, ", found ", Found()));
    }
  }

  absl::Status ParseDType(DType& out) {
    if (Peek() != '"') return Fail(absl::StrCat("dtype is not a string (found ", Found(), ")"));
    UCP_ASSIGN_OR_RETURN(std::string name, String());
    if (std::optional<DType> dtype = DTypeFromSafetensorsName(name)) {
      out = *dtype;
      return absl::OkStatus();
    }
    for (absl::string_view spec_name : kSpecDTypesWithoutUcpType) {
      if (name == spec_name) {
        return absl::UnimplementedError(absl::StrCat("dtype ", name, " is not supported by ucp"));
      }
    }
    return Fail(absl::StrCat("unknown dtype ", QuoteForMessage(name)));
  }

  // {"dtype": .., "shape": [..], "data_offsets": [b, e]}, fields in any order.
  absl::Status EntryFields(HeaderEntry& entry) {
    bool has_dtype = false, has_shape = false, has_offsets = false;
    std::vector<uint64_t> dims, offsets;
    UCP_RETURN_IF_ERROR(Members("the tensor entry", [&](std::string key) -> absl::Status {
      bool* seen = key == "dtype"          ? &has_dtype
                   : key == "shape"        ? &has_shape
                   : key == "data_offsets" ? &has_offsets
                                           : nullptr;
      if (seen == nullptr) return Fail(absl::StrCat("unknown field ", QuoteForMessage(key)));
      if (*seen) return Fail(absl::StrCat("duplicate field ", QuoteForMessage(key)));
      *seen = true;
      if (seen == &has_dtype) return ParseDType(entry.dtype);
      if (seen == &has_shape) return UIntArray("shape", static_cast<size_t>(kMaxRank), dims);
      return UIntArray("data_offsets", 2, offsets);
    }));
    if (!has_dtype) return Fail("missing field 'dtype'");
    if (!has_shape) return Fail("missing field 'shape'");
    if (!has_offsets) return Fail("missing field 'data_offsets'");
    if (offsets.size() != 2) return Fail("data_offsets must be [begin, end]");
    for (uint64_t dim : dims) {
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Fail(absl::StrCat("shape dimension ", dim, " is too large"));
      }
      entry.dims.push_back(static_cast<int64_t>(dim));
    }
    entry.begin = offsets[0];
    entry.end = offsets[1];
    return absl::OkStatus();
  }

  absl::Status Entry(std::string name, ParsedHeader& out) {
    HeaderEntry entry;
    absl::Status status = EntryFields(entry);
    if (!status.ok()) return WithContext(status, absl::StrCat("tensor ", QuoteForMessage(name)));
    entry.name = std::move(name);
    out.entries.push_back(std::move(entry));
    return absl::OkStatus();
  }

  absl::Status Metadata(ParsedHeader& out) {
    absl::flat_hash_set<std::string> keys;
    return Members("__metadata__", [&](std::string key) -> absl::Status {
      if (Peek() != '"') {
        return Fail(absl::StrCat("__metadata__ value of ", QuoteForMessage(key),
                                 " is not a string (found ", Found(), ")"));
      }
      UCP_ASSIGN_OR_RETURN(std::string value, String());
      if (!keys.insert(key).second) {
        return Fail(absl::StrCat("duplicate __metadata__ key ", QuoteForMessage(key)));
      }
      out.metadata.emplace_back(std::move(key), std::move(value));
      return absl::OkStatus();
    });
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<ParsedHeader> ParseHeaderJson(absl::string_view text) {
  if (size_t bad = FirstInvalidUtf8(text); bad != kNoError) {
    return absl::DataLossError(absl::StrCat("header is not valid UTF-8 (byte ", bad, ")"));
  }
  return Parser(text).Parse();
}

std::string SerializeHeaderJson(const ParsedHeader& header) {
  std::string out = "{";
  if (!header.metadata.empty()) {
    AppendJsonString(kMetadataKey, out);
    out += ":{";
    for (size_t i = 0; i < header.metadata.size(); ++i) {
      if (i > 0) out += ',';
      AppendJsonString(header.metadata[i].first, out);
      out += ':';
      AppendJsonString(header.metadata[i].second, out);
    }
    out += '}';
  }
  for (size_t i = 0; i < header.entries.size(); ++i) {
    const HeaderEntry& entry = header.entries[i];
    if (i > 0 || !header.metadata.empty()) out += ',';
    AppendJsonString(entry.name, out);
    absl::StrAppend(&out, ":{\"dtype\":\"", SafetensorsName(entry.dtype), "\",\"shape\":[",
                    absl::StrJoin(entry.dims, ","), "],\"data_offsets\":[", entry.begin, ",",
                    entry.end, "]}");
  }
  out += '}';
  return out;
}

void AppendJsonString(absl::string_view text, std::string& out) {
  out += '"';
  for (const char c : text) {
    const auto* escape = std::find_if(std::begin(kShortEscapes), std::end(kShortEscapes),
                                      [c](const auto& e) { return e.second == c && c != '/'; });
    if (escape != std::end(kShortEscapes)) {
      out += '\\';
      out += escape->first;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += "\\u00";
      AppendHexByte(static_cast<unsigned char>(c), out);
    } else {
      out += c;
    }
  }
  out += '"';
}

bool IsValidUtf8(absl::string_view text) { return FirstInvalidUtf8(text) == kNoError; }

std::string QuoteForMessage(absl::string_view text) {
  constexpr size_t kMaxBytes = 100;
  size_t cut = text.size();
  if (cut > kMaxBytes) {
    cut = kMaxBytes;  // back up to a UTF-8 sequence start
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  }
  std::string out = "'";
  for (size_t i = 0; i < cut; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7F || c == '\\') {
      out += "\\x";
      AppendHexByte(c, out);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (cut < text.size()) out += "...";
  return out + "'";
}

uint64_t LoadLittleEndian64(absl::Span<const std::byte> bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | std::to_integer<uint64_t>(bytes[i]);
  return value;
}

void AppendLittleEndian64(uint64_t value, std::string& out) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

}  // namespace ucp::internal_safetensors
