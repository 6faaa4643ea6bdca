#include "ucp/shard_layout.h"

#include <algorithm>

namespace ucp::store {

FlatLayout MakeFlatLayout(absl::Span<const int64_t> numels, int world, int alignment_factor) {
  FlatLayout l;
  l.world = std::max(world, 1);
  for (int64_t n : numels) l.total += n;
  const int64_t align = static_cast<int64_t>(alignment_factor) * l.world;
  l.aligned = (l.total + align - 1) / align * align;
  l.partition_size = l.aligned / l.world;
  return l;
}

std::vector<FlatFragment> FlatRankFragments(absl::Span<const int64_t> numels, const FlatLayout& layout, int rank) {
  std::vector<FlatFragment> out;
  const int64_t ps = static_cast<int64_t>(rank) * layout.partition_size;
  const int64_t pe = ps + layout.partition_size;
  int64_t lp = 0;
  for (size_t i = 0; i < numels.size(); ++i) {
    const int64_t n = numels[i];
    if (lp < pe && lp + n > ps) {
      const int64_t fs = std::max(lp, ps), fe = std::min(lp + n, pe);
      out.push_back(FlatFragment{static_cast<int>(i), fs - lp, fs - ps, fe - fs});
    }
    lp += n;
  }
  return out;
}

int64_t FlatRankPadding(const FlatLayout& layout, int rank) {
  const int64_t ps = static_cast<int64_t>(rank) * layout.partition_size;
  const int64_t pe = ps + layout.partition_size;
  if (pe <= layout.total) return 0;
  if (ps >= layout.total) return layout.partition_size;
  return pe - layout.total;
}

int64_t PerParamPartition(int64_t numel, int world) { return (numel + world - 1) / world; }

int64_t PerParamValid(int64_t numel, int world, int rank) {
  const int64_t p = PerParamPartition(numel, world);
  return std::max<int64_t>(0, std::min(p, numel - rank * p));
}

std::vector<std::vector<float>> SplitFlat(const std::vector<std::vector<float>>& params, int world,
                                          int alignment_factor) {
  std::vector<int64_t> numels;
  for (const auto& p : params) numels.push_back(static_cast<int64_t>(p.size()));
  const FlatLayout l = MakeFlatLayout(numels, world, alignment_factor);
  std::vector<std::vector<float>> out(l.world, std::vector<float>(l.partition_size, 0.0f));
  for (int r = 0; r < l.world; ++r) {
    for (const FlatFragment& f : FlatRankFragments(numels, l, r)) {
      std::copy_n(params[f.param].begin() + f.param_offset, f.numel, out[r].begin() + f.partition_offset);
    }
  }
  return out;
}

std::vector<std::vector<float>> MergeFlat(const std::vector<std::vector<float>>& partitions,
                                          absl::Span<const int64_t> numels, int alignment_factor) {
  const FlatLayout l = MakeFlatLayout(numels, static_cast<int>(partitions.size()), alignment_factor);
  std::vector<std::vector<float>> out;
  for (int64_t n : numels) out.emplace_back(n, 0.0f);
  for (int r = 0; r < l.world; ++r) {
    for (const FlatFragment& f : FlatRankFragments(numels, l, r)) {
      std::copy_n(partitions[r].begin() + f.partition_offset, f.numel, out[f.param].begin() + f.param_offset);
    }
  }
  return out;
}

std::vector<std::vector<float>> SplitPerParam(const std::vector<float>& param, int world) {
  const int64_t n = static_cast<int64_t>(param.size());
  const int64_t p = PerParamPartition(n, world);
  std::vector<std::vector<float>> out(world, std::vector<float>(p, 0.0f));
  for (int r = 0; r < world; ++r) {
    std::copy_n(param.begin() + r * p, PerParamValid(n, world, r), out[r].begin());
  }
  return out;
}

std::vector<float> MergePerParam(const std::vector<std::vector<float>>& partitions, int64_t numel) {
  const int world = static_cast<int>(partitions.size());
  std::vector<float> out(numel, 0.0f);
  const int64_t p = PerParamPartition(numel, world);
  for (int r = 0; r < world; ++r) {
    std::copy_n(partitions[r].begin(), PerParamValid(numel, world, r), out.begin() + r * p);
  }
  return out;
}

}  // namespace ucp::store
