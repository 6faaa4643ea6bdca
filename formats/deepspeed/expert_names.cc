#include "formats/deepspeed/expert_names.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "formats/deepspeed/deepspeed_keys.h"

namespace ucp::formats::deepspeed {

std::optional<NativeExpertName> ParseNativeExpertName(absl::string_view name) {
  const size_t at = name.find(keys::kNativeExpertsInfix);
  if (at == absl::string_view::npos) return std::nullopt;
  const absl::string_view tail = name.substr(at + keys::kNativeExpertsInfix.size());
  const size_t dot = tail.find('.');
  NativeExpertName out;
  if (dot == absl::string_view::npos || dot + 1 >= tail.size() ||
      !absl::SimpleAtoi(tail.substr(0, dot), &out.id) || out.id < 0) {
    return std::nullopt;
  }
  out.prefix = std::string(name.substr(0, at));
  out.rest = std::string(tail.substr(dot + 1));
  return out;
}

bool HasNativeExpertInfix(absl::string_view name) {
  return absl::StrContains(name, keys::kNativeExpertsInfix);
}

std::string NativeExpertParamName(absl::string_view prefix, int64_t id, absl::string_view rest) {
  return absl::StrCat(prefix, keys::kNativeExpertsInfix, id, ".", rest);
}

bool ParseAutoepExpertName(absl::string_view name, std::string* base, std::string* leaf) {
  const size_t dot = name.rfind('.');
  if (dot == absl::string_view::npos) return false;
  const absl::string_view b = name.substr(0, dot), l = name.substr(dot + 1);
  if (!absl::EndsWith(b, ".experts") || (l != "w1" && l != "w2" && l != "w3")) return false;
  *base = std::string(b);
  *leaf = std::string(l);
  return true;
}

}  // namespace ucp::formats::deepspeed
