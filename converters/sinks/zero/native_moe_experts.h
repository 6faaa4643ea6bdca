// Native DeepSpeed MoE expert files for the ZeRO sink (deepspeed-formats.md §2.5, docs/reshard.md
// "Native MoE"): layer_{L}_expert_{E}_mp_rank_00_model_states.pt is a dict
// `<prefix>.deepspeed_experts.<E>.<rest>` → global expert E's tensor, in the expert module's
// state_dict order. A ZeRO folder's expert files are copied as they are (they do not depend on dp);
// from a UCP they are rebuilt from the fp32 master weights, with the key order reconstructed here.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ucp::converters::sinks {

struct NativeMoeLayer {
  std::string prefix;  // "<module>.deepspeed_moe.experts" (the name before ".deepspeed_experts.")
  int num_experts = 0;
  int num_local = 0;  // num_experts / ep
  // One local expert's parameter suffixes ("0.weight", "0.bias", ...) in module order.
  std::vector<std::string> rests;

  // The runtime name of local expert `local`'s `rest` (what param_shapes and the UCP use) and the
  // global name an expert file uses for global expert `global`.
  std::string LocalName(int local, absl::string_view rest) const;
  std::string GlobalName(int global, absl::string_view rest) const;
};

// From the expert parameters' runtime names in param_shapes order (all groups, flattened): the
// MoE layers in order of first appearance, each with `num_experts[layer]` experts over `ep` EP
// ranks. Module order is reconstructed from the flattened order, which interleaves param groups:
// a submodule's parameters ("0.weight" then "0.bias") are kept together at the submodule's first
// appearance, in group order within it; for torch modules that register weight before bias (Linear,
// LayerNorm, ...) this is state_dict order. DataLoss (naming `what`) for inconsistent names.
absl::StatusOr<std::vector<NativeMoeLayer>> NativeMoeLayers(
    const std::vector<std::string>& expert_names, const std::vector<int>& num_experts, int ep,
    absl::string_view what);

}  // namespace ucp::converters::sinks
