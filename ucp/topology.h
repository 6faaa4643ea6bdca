// Topology: the parallel sizes of a DeepSpeed run and where each rank sits in them, exactly as
// DeepSpeed lays ranks out (deepspeed-formats.md §1.2, §7.1; deepspeed-runtime.md §1.6, §2.1,
// §3.1, §3.10). One description for the checkpoint index (what a checkpoint was saved at), every
// reshard target (what to write) and the runtime's process groups.
//
//   dp   ZeRO's data-parallel world: the ranks an optimizer param group is partitioned over, i.e.
//        the optimizer shards per MP rank (`dp_world_size`). With Ulysses sequence parallelism it
//        is the sequence-data-parallel world and includes `sp` (SP ranks count as data-parallel
//        for ZeRO and for checkpoint names).
//   sp   Ulysses / AutoSP size, a factor of dp: SP groups are consecutive DP ranks [i*sp,
//   (i+1)*sp). tp   tensor parallel size (AutoTP autotp_size): TP groups are consecutive global
//   ranks. pp   pipeline stages: each stage a consecutive block of dp*tp global ranks. ep   expert
//   parallel size (AutoEP autoep_size, native MoE ep_size), a factor of dp. edp  = dp / ep: the
//   expert-data-parallel size, the ranks an expert param group is partitioned
//        over. Default order: EP groups are consecutive blocks of ep DP ranks, so EP rank e's
//        expert-DP group is DP ranks e, e+ep, e+2ep, ...; with use_data_before_expert_parallelism
//        EP rank e owns DP ranks [e*edp, (e+1)*edp).
//
// Global rank = (pp_rank * dp + dp_rank) * tp + tp_rank; the checkpoint's mp rank (mp_rank_XX) =
// pp_rank * tp + tp_rank. Expert parallelism is laid over DP ranks only: EP with tp > 1 (AutoEP+
// AutoTP "folding") and SP with TP are not described here and Validate refuses them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace ucp {

// Where a DP rank sits in expert parallelism.
struct EpPlace {
  int ep_rank = 0;   // which EP rank's experts it holds
  int edp_rank = 0;  // its rank inside that EP rank's expert-data-parallel group
  friend bool operator==(const EpPlace&, const EpPlace&) = default;
};

// Every coordinate of one global rank.
struct RankCoords {
  int pp = 0, dp = 0, tp = 0;
  int sp = 0;  // rank inside its SP group (dp % sp)
  EpPlace ep;
  friend bool operator==(const RankCoords&, const RankCoords&) = default;
};

// Largest size of any one dimension, and of the whole world, Validate accepts: far beyond any
// real run, small enough that per-rank metadata of a plan cannot overflow.
inline constexpr int kMaxParallelSize = 1 << 20;

struct Topology {
  int dp = 1;
  int tp = 1;
  int pp = 1;
  int ep = 1;
  int sp = 1;
  bool use_data_before_expert_parallelism = false;

  int edp() const { return dp / ep; }
  int mp() const { return tp * pp; }          // mp_rank_XX files per DP rank
  int world() const { return dp * tp * pp; }  // global ranks

  // InvalidArgument naming the numbers when a size is < 1 or > kMaxParallelSize, ep or sp does not
  // divide dp, the world is over kMaxParallelSize, or a combination DeepSpeed lays out otherwise
  // (ep > 1 or sp > 1 with tp > 1). `world_size` > 0 must also equal world().
  absl::Status Validate(int64_t world_size = 0) const;
  std::string ToString() const;  // "dp 4 (sp 1), tp 1, pp 1, ep 2 (edp 2, data first)"

  // Expert parallelism of DP rank `dp_rank` (0 <= dp_rank < dp).
  EpPlace PlaceOnEp(int dp_rank) const;
  // The DP rank at `place`.
  int DpRank(const EpPlace& place) const;
  // EP rank `ep_rank`'s expert-data-parallel group: its DP ranks in expert-DP rank order.
  std::vector<int> ExpertDpGroup(int ep_rank) const;
  // The EP group of DP rank `dp_rank`: the DP ranks with its expert-DP rank, in EP rank order.
  std::vector<int> EpGroup(int dp_rank) const;

  // Global rank <-> coordinates (0 <= global_rank < world()).
  RankCoords Coords(int global_rank) const;
  int GlobalRank(int pp_rank, int dp_rank, int tp_rank) const;
  int MpRank(const RankCoords& c) const { return c.pp * tp + c.tp; }

  friend bool operator==(const Topology&, const Topology&) = default;
};

}  // namespace ucp
