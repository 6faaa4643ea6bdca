#include "runtime/train/expert_setup.h"

#include <string>

namespace ucp::runtime {

ExpertGroups MakeExpertGroups(Comm& world, int ep, bool data_first) {
  ExpertGroups g;
  const int w = world.size(), r = world.rank();
  // E + D: EP block r / ep, expert-DP lane r % ep. D + E: expert-DP block r / stride, EP lane
  // r % stride.
  const int stride = data_first ? w / ep : 1, block = data_first ? w / ep : ep;
  const int ep_id = data_first ? r % stride : r / ep, edp_id = data_first ? r / stride : r % ep;
  std::vector<int> ep_ranks, edp_ranks;
  for (int k = 0; k < ep; ++k) ep_ranks.push_back(data_first ? ep_id + k * stride : ep_id * ep + k);
  for (int k = 0; k < w / ep; ++k)
    edp_ranks.push_back(data_first ? edp_id * block + k : edp_id + k * ep);
  const std::string base = "ep_size_" + std::to_string(ep);
  g.ep = world.Subgroup(ep_ranks, base + "_ep" + std::to_string(ep_id));
  g.edp = world.Subgroup(edp_ranks, base + "_edp" + std::to_string(edp_id));
  g.data_first = data_first;
  return g;
}

std::vector<OptimGroup> SplitExpertGroups(std::vector<OptimGroup> groups, const Model& model,
                                          int ep) {
  std::vector<OptimGroup> experts;
  for (OptimGroup& g : groups) {
    OptimGroup e = g;
    e.name = "ep_size_" + std::to_string(ep);
    e.expert = true;
    e.params.clear();
    std::vector<int> dense;
    for (int p : g.params) (model.params()[p].expert() ? e.params : dense).push_back(p);
    g.params = dense;
    if (!e.params.empty()) experts.push_back(e);
  }
  std::vector<OptimGroup> out;
  for (OptimGroup& g : groups) {
    if (!g.params.empty()) out.push_back(std::move(g));
  }
  for (OptimGroup& e : experts) out.push_back(std::move(e));
  return out;
}

nlohmann::ordered_json AutoEpLayersRecord(const Model& model, int zero_stage, int world) {
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  const std::string suffix = ".experts.w1";
  for (const ModelParam& p : model.params()) {
    if (!p.expert() || p.name.size() <= suffix.size() ||
        p.name.compare(p.name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string prefix = p.name.substr(0, p.name.size() - 3);  // ...mlp.experts
    const std::string path = prefix.substr(0, prefix.size() - 8);    // ...mlp
    nlohmann::ordered_json l;
    l["moe_layer_id"] = layers.size();
    l["module_path"] = path;
    l["num_experts"] = p.num_experts;
    l["num_local_experts"] = p.num_experts;
    l["ep_size"] = 1;
    l["expert_key_prefix"] = prefix;
    l["checkpoint_format"] = zero_stage == 3 ? "zero3_partitioned" : "per_expert_files";
    l["checkpoint_format_version"] = zero_stage == 3 ? nlohmann::ordered_json(1) : nullptr;
    l["ep_group_name"] = "ep_size_1";
    l["ep_rank"] = 0;
    l["expert_data_parallel_rank"] = 0;
    l["expert_data_parallel_world_size"] = world;
    l["global_expert_start"] = 0;
    l["global_expert_end"] = p.num_experts;
    layers.push_back(l);
  }
  return layers;
}

}  // namespace ucp::runtime
