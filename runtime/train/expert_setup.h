// AutoEP in ucp train (deepspeed-runtime.md §1.6, §1.8): the expert-parallel and expert-DP groups
// of DeepSpeed's default layout, the optimizer's expert param groups, and the ds_autoep_layers
// record a save starts from.
#pragma once

#include <memory>
#include <vector>

#include "nlohmann/json.hpp"
#include "runtime/dist/comm.h"
#include "runtime/engine/engine.h"
#include "runtime/model/model.h"

namespace ucp::runtime {

// "E + D" (use_data_before_expert_parallelism false): EP groups are consecutive blocks of
// autoep_size ranks, expert-DP groups the ranks at the same place in every block. "D + E"
// (data_first): with stride = world / autoep_size, expert-DP groups are the consecutive blocks
// [i*stride, (i+1)*stride), EP groups the strided {i, i+stride, ...} (§1.6).
inline int EpRankOf(int rank, int world, int autoep_size, bool data_first) {
  return data_first ? rank / (world / autoep_size) : rank % autoep_size;
}

struct ExpertGroups {
  std::unique_ptr<Comm> ep, edp;
  bool data_first = false;  // use_data_before_expert_parallelism
  ExpertComms comms() const { return {ep.get(), edp.get(), data_first}; }
};
// Collective over `world` (every rank creates its EP group, then its expert-DP group).
ExpertGroups MakeExpertGroups(Comm& world, int autoep_size, bool data_first = false);

// DeepSpeed's split_params_into_different_moe_groups_for_optimizer: each group loses its expert
// weights, which form one group "ep_size_<ep>" (moe) per group that had some, after the others.
std::vector<OptimGroup> SplitExpertGroups(std::vector<OptimGroup> groups, const Model& model,
                                          int autoep_size);

// ds_autoep_layers as an autoep_size-1 run of `world` ranks saves it (moe_layer_id in module
// order, the layer's path and experts); the ZeRO sink rewrites it per rank for the real size.
nlohmann::ordered_json AutoEpLayersRecord(const Model& model, int zero_stage, int world);

}  // namespace ucp::runtime
