#include "cli/commands/human_bytes.h"

#include "absl/strings/str_format.h"

namespace ucp::cli {

std::string HumanBytes(double n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (n >= 1024 && u < 4) {
    n /= 1024;
    ++u;
  }
  return u == 0 ? absl::StrFormat("%.0f %s", n, units[u]) : absl::StrFormat("%.1f %s", n, units[u]);
}

}  // namespace ucp::cli
