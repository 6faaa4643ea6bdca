// Shared by autoep_config.cc and autoep_layers.cc only; not part of the library's interface.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace ucp::runtime::internal_autoep {

inline constexpr char kWhat[] = "ds_config";

inline absl::Status Invalid(absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(kWhat, ": ", message));
}

// DeepSpeed's _divisors: the positive divisors of n, ascending.
inline std::vector<int> Divisors(int n) {
  std::vector<int> low, high;
  for (int d = 1; d <= n / d; ++d) {
    if (n % d != 0) continue;
    low.push_back(d);
    if (d != n / d) high.push_back(n / d);
  }
  low.insert(low.end(), high.rbegin(), high.rend());
  return low;
}

// Python's repr of a list of ints: "[1, 2, 4]".
inline std::string PyIntList(const std::vector<int>& values) {
  return absl::StrCat("[", absl::StrJoin(values, ", "), "]");
}

}  // namespace ucp::runtime::internal_autoep
