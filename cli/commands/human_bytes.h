// Byte counts for people: "512 B", "1.5 KiB", "3.0 GiB" (binary units, one decimal above bytes).
#pragma once

#include <string>

namespace ucp::cli {

std::string HumanBytes(double bytes);

}  // namespace ucp::cli
