#include "formats/base/byte_size.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ucp {

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text, bool allow_zero) {
  std::string s = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  struct Unit {
    const char* suffix;
    double factor;
  };
  // Longest suffixes first: "gib" before "gb" before "g" before "b".
  static constexpr Unit kUnits[] = {
      {"kib", 1024.0}, {"mib", 1048576.0}, {"gib", 1073741824.0}, {"tib", 1099511627776.0},
      {"kb", 1e3},     {"mb", 1e6},        {"gb", 1e9},           {"tb", 1e12},
      {"k", 1024.0},   {"m", 1048576.0},   {"g", 1073741824.0},   {"t", 1099511627776.0},
      {"b", 1.0}};
  double factor = 1.0;
  for (const Unit& u : kUnits) {
    if (absl::EndsWith(s, u.suffix)) {
      factor = u.factor;
      s.resize(s.size() - std::string(u.suffix).size());
      break;
    }
  }
  double value = 0;
  const std::string number(absl::StripAsciiWhitespace(s));
  const bool ok = !number.empty() && absl::SimpleAtod(number, &value) && value == value &&
                  (allow_zero ? value >= 0 : value > 0) && value * factor < 1.8e19;
  if (!ok || (!allow_zero && value * factor < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad size '", text, "' (bytes, or with a unit: 256MiB, 1.5GiB, 5GB = 5e9, 64k = 65536)"));
  }
  return static_cast<uint64_t>(value * factor);
}

std::string HumanBytes(double n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (n >= 1024 && u < 4) {
    n /= 1024;
    ++u;
  }
  return u == 0 ? absl::StrFormat("%.0f %s", n, units[u]) : absl::StrFormat("%.1f %s", n, units[u]);
}

}  // namespace ucp
