// Sizes given on the command line (--memory-limit, --max-shard-size), one grammar everywhere:
//   "65536"                  bytes;
//   "256KiB" "1.5GiB" ...    binary (KiB MiB GiB TiB = 2^10 .. 2^40);
//   "500KB" "5GB" ...        SI (KB MB GB TB = 10^3 .. 10^12), as Hugging Face's max_shard_size;
//   "64k" "256M" "1G" "2T"   a bare letter is binary, as sort -S and docker read it.
// Case-insensitive, whitespace around and between allowed, fractions allowed; the result is
// rounded down to whole bytes. And the other way, for people: HumanBytes.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ucp {

// InvalidArgument (quoting `text`) unless it is a positive size below 2^64 (zero with allow_zero).
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text, bool allow_zero = false);

// "512 B", "1.5 KiB", "3.0 GiB": binary units, one decimal above bytes (also for rates).
std::string HumanBytes(double bytes);

}  // namespace ucp
