// Expert parameter names, in one place for every layer that maps between layouts (export, diff,
// the ZeRO sink's native MoE expert files):
//   native DeepSpeed MoE: "<prefix>.deepspeed_experts.<id>.<rest>" (id local on an EP rank in a
//     checkpoint, global in an expert file or export; deepspeed-formats.md §2.5);
//   AutoEP fused: "<base>.w1|w2|w3" with <base> ending in ".experts" (§7).
#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace ucp::formats::deepspeed {

struct NativeExpertName {
  std::string prefix;  // the name before ".deepspeed_experts."
  int id = 0;          // local or global expert id
  std::string rest;    // the name after "<id>."
};

// nullopt unless `name` is "<prefix>.deepspeed_experts.<id>.<rest>" with a non-negative id and a
// non-empty rest.
std::optional<NativeExpertName> ParseNativeExpertName(absl::string_view name);
// True when `name` has the native infix at all (parsed or not).
bool HasNativeExpertInfix(absl::string_view name);
// "<prefix>.deepspeed_experts.<id>.<rest>".
std::string NativeExpertParamName(absl::string_view prefix, int64_t id, absl::string_view rest);

// For "<base>.w1|w2|w3" with <base> ending in ".experts": sets *base and *leaf.
bool ParseAutoepExpertName(absl::string_view name, std::string* base, std::string* leaf);

}  // namespace ucp::formats::deepspeed
