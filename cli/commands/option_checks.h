// Checks of command-line values, one per kind of value, shared by every verb. Each returns "" for
// a good value, else a short message without the option name (CLI11 prefixes it). main.cc wraps
// them as CLI11 validators, so every bad value is a usage error (exit 2) with the same wording
// whichever verb and option it is. They hold no CLI11 types, so tests call them directly.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace ucp::cli {

// An integer of 1 .. 2^31-1 (--dp, --autoep-size, --threads).
std::string CheckPositiveInt(const std::string& value);
// An integer of 0 .. 2^31-1 (--values, --max-rows, --num_extract_workers).
std::string CheckNonNegativeInt(const std::string& value);
// A finite number >= 0 (--atol).
std::string CheckNonNegativeFloat(const std::string& value);
// A size > 0 in ParseByteSize's grammar (formats/base/byte_size.h): 65536, 256MiB, 5GB, 1G.
std::string CheckByteSize(const std::string& value);
// A tag: one folder name (not empty, no '/', not "." or "..", at most 255 bytes).
std::string CheckFolderName(const std::string& value);
// One of `choices` (case-sensitive).
std::string CheckOneOf(const std::string& value, absl::Span<const absl::string_view> choices);

// The message for a first word that is not one of `commands`: names it, says that `train` is not
// built yet, and suggests the nearest command when one is close ("did you mean 'inspect'?").
std::string UnknownCommandMessage(absl::string_view word, const std::vector<std::string>& commands);

}  // namespace ucp::cli
