// Levenshtein distance, for "did you mean ...?" suggestions (unknown CLI commands, unknown config
// keys); ninja's SpellcheckString does the same.
#pragma once

#include <cstddef>

#include "absl/strings/string_view.h"

namespace ucp {

size_t EditDistance(absl::string_view a, absl::string_view b);

}  // namespace ucp
