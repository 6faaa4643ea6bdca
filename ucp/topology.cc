#include "ucp/topology.h"

#include "absl/strings/str_cat.h"

namespace ucp {

absl::Status Topology::Validate(int64_t world_size) const {
  const std::pair<const char*, int> sizes[] = {
      {"dp", dp}, {"tp", tp}, {"pp", pp}, {"ep", ep}, {"sp", sp}};
  for (const auto& [name, size] : sizes) {
    if (size < 1 || size > kMaxParallelSize) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " ", size, " is not in [1, ", kMaxParallelSize, "]"));
    }
  }
  if (dp % ep != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dp ", dp, " is not a multiple of ep ", ep,
                     " (the expert-data-parallel size dp / ep must be whole)"));
  }
  if (dp % sp != 0) {
    return absl::InvalidArgumentError(absl::StrCat("dp ", dp, " is not a multiple of sp ", sp,
                                                   " (SP ranks are data-parallel ranks for ZeRO)"));
  }
  const int64_t world = int64_t{dp} * tp * pp;
  if (world > kMaxParallelSize) {
    return absl::InvalidArgumentError(absl::StrCat("dp ", dp, " * tp ", tp, " * pp ", pp, " = ",
                                                   world, " ranks, more than ", kMaxParallelSize));
  }
  if (tp > 1 && (ep > 1 || sp > 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tp ", tp, " with ep ", ep, ", sp ", sp,
                     ": expert or sequence parallelism over TP lanes is not supported"));
  }
  if (world_size > 0 && world_size != world) {
    return absl::InvalidArgumentError(absl::StrCat("dp ", dp, " * tp ", tp, " * pp ", pp, " = ",
                                                   world, " != world size ", world_size));
  }
  return absl::OkStatus();
}

std::string Topology::ToString() const {
  std::string out = absl::StrCat("dp ", dp);
  if (sp > 1) absl::StrAppend(&out, " (sp ", sp, ")");
  absl::StrAppend(&out, ", tp ", tp, ", pp ", pp, ", ep ", ep);
  if (ep > 1)
    absl::StrAppend(&out, " (edp ", edp(),
                    use_data_before_expert_parallelism ? ", data first)" : ")");
  return out;
}

EpPlace Topology::PlaceOnEp(int dp_rank) const {
  if (use_data_before_expert_parallelism) return EpPlace{dp_rank / edp(), dp_rank % edp()};
  return EpPlace{dp_rank % ep, dp_rank / ep};
}

int Topology::DpRank(const EpPlace& place) const {
  if (use_data_before_expert_parallelism) return place.ep_rank * edp() + place.edp_rank;
  return place.edp_rank * ep + place.ep_rank;
}

std::vector<int> Topology::ExpertDpGroup(int ep_rank) const {
  std::vector<int> out;
  out.reserve(edp());
  for (int i = 0; i < edp(); ++i) out.push_back(DpRank(EpPlace{ep_rank, i}));
  return out;
}

std::vector<int> Topology::EpGroup(int dp_rank) const {
  const int edp_rank = PlaceOnEp(dp_rank).edp_rank;
  std::vector<int> out;
  out.reserve(ep);
  for (int e = 0; e < ep; ++e) out.push_back(DpRank(EpPlace{e, edp_rank}));
  return out;
}

RankCoords Topology::Coords(int global_rank) const {
  RankCoords c;
  c.tp = global_rank % tp;
  c.dp = (global_rank / tp) % dp;
  c.pp = global_rank / (tp * dp);
  c.sp = c.dp % sp;
  c.ep = PlaceOnEp(c.dp);
  return c;
}

int Topology::GlobalRank(int pp_rank, int dp_rank, int tp_rank) const {
  return (pp_rank * dp + dp_rank) * tp + tp_rank;
}

}  // namespace ucp
