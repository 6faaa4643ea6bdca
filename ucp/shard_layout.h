// How DeepSpeed cuts parameters across data-parallel ranks (deepspeed-formats.md §3, §4.1, §7.1),
// shared by every planner that writes or reads ZeRO shards:
//   ZeRO-1/2 (and BF16_Optimizer): a param group is one flat buffer (params concatenated in flat
//     order, zero padded to a multiple of 2·W), cut into W equal partitions;
//   ZeRO-3: each parameter alone, P = ceil(numel / W) elements per rank, the last rank zero padded;
//   AutoEP experts: the merged [num_experts, ...] tensor is cut into ep row blocks first, then the
//     block is partitioned over the W = dp / ep ranks of that EP rank's expert-DP group.
// Pure arithmetic; SplitFlat / MergeFlat (ZeRO-1/2) and SplitPerParam / MergePerParam (ZeRO-3) are
// exact inverses over element vectors and exist for the property test and small tools.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace ucp::store {

// ZeRO-1/2 flat buffer of one param group over W ranks.
struct FlatLayout {
  int world = 1;              // W
  int64_t total = 0;          // Σ numel
  int64_t aligned = 0;        // total rounded up to a multiple of alignment_factor · W
  int64_t partition_size = 0; // aligned / W
};

// alignment_factor is DeepSpeed's nccl_start_alignment_factor (2).
FlatLayout MakeFlatLayout(absl::Span<const int64_t> numels, int world, int alignment_factor = 2);

// The piece of parameter `param` that rank r's partition holds.
struct FlatFragment {
  int param = 0;              // index into the numels given to MakeFlatLayout
  int64_t param_offset = 0;   // first element inside the flattened parameter (lp address)
  int64_t partition_offset = 0;  // first element inside the rank's partition (hp address, saved)
  int64_t numel = 0;
};

// Fragments of rank r, in flat order (only params overlapping the partition).
std::vector<FlatFragment> FlatRankFragments(absl::Span<const int64_t> numels, const FlatLayout& layout, int rank);

// Padding elements inside rank r's partition (DeepSpeedZeroOptimizer's group_paddings[g]).
int64_t FlatRankPadding(const FlatLayout& layout, int rank);

// ZeRO-3: elements per rank and the valid (non-padding) elements rank r holds.
int64_t PerParamPartition(int64_t numel, int world);
int64_t PerParamValid(int64_t numel, int world, int rank);

// Reference splitters over element values (padding written as 0).
std::vector<std::vector<float>> SplitFlat(const std::vector<std::vector<float>>& params, int world,
                                          int alignment_factor = 2);
std::vector<std::vector<float>> MergeFlat(const std::vector<std::vector<float>>& partitions,
                                          absl::Span<const int64_t> numels, int alignment_factor = 2);
std::vector<std::vector<float>> SplitPerParam(const std::vector<float>& param, int world);
std::vector<float> MergePerParam(const std::vector<std::vector<float>>& partitions, int64_t numel);

}  // namespace ucp::store
