// ShardLayout: the one description of how DeepSpeed cuts a group of parameters across data-
// parallel ranks (deepspeed-formats.md §3, §4.1, §4.2, §7.1). Readers (the checkpoint index,
// which checks every stored fragment against it) and writers (the ZeRO sink) both ask it; no other
// code computes a partition, a padding or an offset.
//
//   kFlat (ZeRO-1/2, BF16_Optimizer, §3): the group's parameters concatenated in flat order, zero
//     padded to a multiple of alignment_factor · W, cut into W equal partitions; rank r owns flat
//     elements [r·S, (r+1)·S), S = aligned / W. A parameter may span ranks.
//   kPerParam (ZeRO-3, §4): each parameter cut alone into W pieces of P = ceil(numel / W), the last
//     ones zero padded; a rank's partition (a sub-group's fp32_flat_groups entry) is its P-element
//     piece of every parameter, concatenated in flat order.
//   Expert groups (AutoEP fused experts, native MoE experts, §7.1): W is the expert-DP size and the
//     rank's partition rank its place in its EP rank's expert-DP group (Topology::PlaceOnEp). The
//     numels are EP-local: the merged tensor stacks the EP ranks' local tensors, so EP rank e's
//     local element i is merged element e · numel + i.
//   Tensor parallelism cuts a parameter before any of this (each TP rank's slice is partitioned
//     on its own): see ucp/tp_layout.h (row/column, uneven vocabulary, sub-parameter widths).
//
// Split and Merge move bytes with these rules (tests and small tensors; planners use Shard's
// pieces to emit copy operations) and are exact inverses: Merge(Split(x)) == x.
#pragma once

#include <cstdint>
#include <vector>

#include "ucp/topology.h"

namespace ucp {

enum class PartitionKind : uint8_t {
  kFlat,      // ZeRO-1/2 and BF16_Optimizer
  kPerParam,  // ZeRO-3
};

// One partitioned group: a ZeRO-1/2 optimizer param group, or a ZeRO-3 sub-group.
struct GroupSpec {
  PartitionKind kind = PartitionKind::kFlat;
  std::vector<int64_t> numels;  // each parameter's elements in flat order (experts: EP-local)
  bool expert = false;          // partitioned over the expert-DP group
  int alignment_factor = 2;     // kFlat: DeepSpeed's nccl_start_alignment_factor
};

// A run of one parameter inside a rank's partition.
struct ShardPiece {
  int param = 0;              // index into GroupSpec::numels
  int64_t param_offset = 0;   // first element in the (EP-local) flattened parameter
  int64_t merged_offset = 0;  // first element in the merged tensor (ep_rank · numel + param_offset)
  int64_t partition_offset = 0;  // first element in the rank's partition (ZeRO-1/2's "hp" address)
  int64_t numel = 0;
  friend bool operator==(const ShardPiece&, const ShardPiece&) = default;
};

// What one DP rank holds of a group.
struct RankShard {
  int world = 1;                   // W: the ranks the group is partitioned over
  int partition_rank = 0;          // the rank's place among them
  int ep_rank = 0;                 // expert groups: whose experts; else 0
  int64_t size = 0;                // elements of the rank's partition, padding included
  int64_t padding = 0;             // padding elements inside it
  int64_t total_padding = 0;       // kFlat: the group's alignment padding (aligned − Σ numels)
  std::vector<ShardPiece> pieces;  // in partition order; padding fills the gaps and the end

  // group_paddings[g] as saved: the rank's padding; BF16_Optimizer records the whole group's on
  // the last rank and 0 elsewhere (§3.6).
  int64_t SavedPadding(bool bf16_optimizer) const;
};

// ZeRO-3's cut of one parameter (also of each rank's frozen_param_fragments, §4.3).
struct PerParamPiece {
  int64_t partition = 0;  // P = ceil(numel / W): every rank's piece, padding included
  int64_t offset = 0;     // first element of the rank's piece in the flattened parameter
  int64_t valid = 0;      // elements of the parameter in it (the rest is padding)
};
PerParamPiece PerParamShard(int64_t numel, int world, int rank);

class ShardLayout {
 public:
  // `topology` must pass Validate(); its dp / ep / expert order place the ranks.
  ShardLayout(GroupSpec spec, const Topology& topology);

  const GroupSpec& spec() const { return spec_; }
  const Topology& topology() const { return topology_; }
  int world() const { return world_; }
  int64_t total() const { return total_; }                    // Σ numels
  int64_t partition_size() const { return partition_size_; }  // every rank's partition elements
  // kFlat: the padded flat buffer of one EP rank (the module's lp buffer), world · partition_size.
  int64_t flat_length() const { return partition_size_ * world_; }

  RankShard Shard(int dp_rank) const;

  // Reference byte movers over `elem_size`-byte elements. merged[p]: parameter p's merged tensor
  // (experts: ep · numels[p] elements, every EP rank's rows), row-major. Split gives every DP
  // rank's partition, padding zero; Merge takes every DP rank's partition and gives the merged
  // tensors back (every merged element is held by exactly one DP rank).
  using Bytes = std::vector<uint8_t>;
  std::vector<Bytes> Split(const std::vector<Bytes>& merged, size_t elem_size) const;
  std::vector<Bytes> Merge(const std::vector<Bytes>& partitions, size_t elem_size) const;

 private:
  GroupSpec spec_;
  Topology topology_;
  int world_ = 1;
  int64_t total_ = 0;
  int64_t partition_size_ = 0;
};

}  // namespace ucp
