#include "cli/commands/option_checks.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/base/byte_size.h"
#include "formats/base/edit_distance.h"

namespace ucp::cli {
namespace {

// `value` as a whole number in [lo, INT_MAX]; `what` names the kind in the message.
std::string CheckIntAtLeast(const std::string& value, int64_t lo, absl::string_view what) {
  int64_t n = 0;
  const char* end = value.data() + value.size();
  const auto [ptr, ec] = std::from_chars(value.data(), end, n);
  if (value.empty() || ec != std::errc() || ptr != end || n < lo || n > INT_MAX) {
    return absl::StrCat("expected ", what, ", got '", value, "'");
  }
  return "";
}

// Levenshtein distance, for "did you mean" (ninja's SpellcheckString does the same).
}  // namespace

std::string CheckPositiveInt(const std::string& value) {
  return CheckIntAtLeast(value, 1, "a whole number from 1 to 2147483647");
}

std::string CheckNonNegativeInt(const std::string& value) {
  return CheckIntAtLeast(value, 0, "a whole number from 0 to 2147483647");
}

std::string CheckNonNegativeFloat(const std::string& value) {
  double x = 0;
  if (!absl::SimpleAtod(value, &x) || !std::isfinite(x) || x < 0) {
    return absl::StrCat("expected a number >= 0, got '", value, "'");
  }
  return "";
}

std::string CheckByteSize(const std::string& value) {
  absl::StatusOr<uint64_t> size = ParseByteSize(value, /*allow_zero=*/true);
  if (!size.ok()) return std::string(size.status().message());
  if (*size == 0)
    return absl::StrCat("expected a size above 0 bytes (256MiB, 1G, 5GB), got '", value, "'");
  return "";
}

std::string CheckFolderName(const std::string& value) {
  if (value.empty()) return "expected a folder name, got ''";
  if (value == "." || value == ".." || value.find('/') != std::string::npos || value.size() > 255) {
    return absl::StrCat("expected one folder name (no '/', not . or ..), got '", value, "'");
  }
  return "";
}

std::string CheckOneOf(const std::string& value, absl::Span<const absl::string_view> choices) {
  if (std::find(choices.begin(), choices.end(), value) != choices.end()) return "";
  return absl::StrCat("expected one of ", absl::StrJoin(choices, ", "), "; got '", value, "'");
}

std::string UnknownCommandMessage(absl::string_view word,
                                  const std::vector<std::string>& commands) {
  std::string message = absl::StrCat("unknown command '", word, "'");
  const std::string* best = nullptr;
  size_t best_distance = 3;  // suggest only near misses, as ninja does
  for (const std::string& c : commands) {
    const size_t d = EditDistance(word, c);
    if (d < best_distance || (best == nullptr && absl::StartsWith(c, word) && !word.empty())) {
      best = &c;
      best_distance = std::min(d, best_distance);
    }
  }
  if (best != nullptr) return absl::StrCat(message, "; did you mean '", *best, "'?");
  return absl::StrCat(message, "; the commands: ", absl::StrJoin(commands, ", "));
}

}  // namespace ucp::cli
