#include "converters/sinks/zero/native_moe_experts.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/expert_names.h"

namespace ucp::converters::sinks {

namespace keys = formats::deepspeed::keys;

std::string NativeMoeLayer::LocalName(int local, absl::string_view rest) const {
  return formats::deepspeed::NativeExpertParamName(prefix, local, rest);
}

std::string NativeMoeLayer::GlobalName(int global, absl::string_view rest) const {
  return formats::deepspeed::NativeExpertParamName(prefix, global, rest);
}

absl::StatusOr<std::vector<NativeMoeLayer>> NativeMoeLayers(
    const std::vector<std::string>& expert_names, const std::vector<int>& num_experts, int ep,
    absl::string_view what) {
  std::vector<NativeMoeLayer> layers;
  // Per layer: local-0 suffixes in flattened order, and how many names each local id has.
  std::vector<std::vector<std::string>> flat_rests;
  std::vector<absl::flat_hash_map<int, int>> per_local;
  for (const std::string& name : expert_names) {
    if (!formats::deepspeed::HasNativeExpertInfix(name)) {
      return absl::DataLossError(absl::StrCat(what, ": expert parameter '", name,
                                              "' is not named '...", keys::kNativeExpertsInfix,
                                              "<id>.<name>'"));
    }
    const std::optional<formats::deepspeed::NativeExpertName> native =
        formats::deepspeed::ParseNativeExpertName(name);
    if (!native)
      return absl::DataLossError(absl::StrCat(what, ": '", name, "' has no local expert id"));
    const std::string& prefix = native->prefix;
    const int local = native->id;
    auto it = std::find_if(layers.begin(), layers.end(),
                           [&](const NativeMoeLayer& l) { return l.prefix == prefix; });
    if (it == layers.end()) {
      const size_t l = layers.size();
      if (l >= num_experts.size()) {
        return absl::DataLossError(absl::StrCat(what, ": MoE layer ", l, " ('", prefix, "') but ",
                                                keys::kNumExperts, " lists ", num_experts.size()));
      }
      if (ep < 1 || num_experts[l] < 1 || num_experts[l] % ep != 0) {
        return absl::DataLossError(absl::StrCat(what, ": layer ", l, " has ", num_experts[l],
                                                " experts, not a multiple of ep_size ", ep));
      }
      NativeMoeLayer layer;
      layer.prefix = prefix;
      layer.num_experts = num_experts[l];
      layer.num_local = num_experts[l] / ep;
      layers.push_back(std::move(layer));
      flat_rests.emplace_back();
      per_local.emplace_back();
      it = layers.end() - 1;
    }
    const size_t l = static_cast<size_t>(it - layers.begin());
    if (local >= it->num_local) {
      return absl::DataLossError(
          absl::StrCat(what, ": '", name, "': local expert id not in [0, ", it->num_local, ")"));
    }
    ++per_local[l][local];
    if (local == 0) flat_rests[l].push_back(native->rest);
  }
  if (layers.size() != num_experts.size()) {
    return absl::DataLossError(absl::StrCat(what, ": ", keys::kNumExperts, " lists ",
                                            num_experts.size(), " MoE layers, the parameters name ",
                                            layers.size()));
  }
  for (size_t l = 0; l < layers.size(); ++l) {
    for (int local = 0; local < layers[l].num_local; ++local) {
      if (per_local[l][local] != static_cast<int>(flat_rests[l].size())) {
        return absl::DataLossError(
            absl::StrCat(what, ": layer '", layers[l].prefix, "': local expert ", local, " has ",
                         per_local[l][local], " parameters, expert 0 has ", flat_rests[l].size()));
      }
    }
    // Submodule ("0" of "0.weight") first-appearance rank; a stable sort keeps group order within.
    absl::flat_hash_map<std::string, size_t> first;
    auto submodule = [](const std::string& rest) {
      const size_t dot = rest.rfind('.');
      return dot == std::string::npos ? std::string() : rest.substr(0, dot);
    };
    for (const std::string& r : flat_rests[l]) first.emplace(submodule(r), first.size());
    layers[l].rests = flat_rests[l];
    std::stable_sort(layers[l].rests.begin(), layers[l].rests.end(),
                     [&](const std::string& a, const std::string& b) {
                       return first.at(submodule(a)) < first.at(submodule(b));
                     });
  }
  return layers;
}

}  // namespace ucp::converters::sinks
