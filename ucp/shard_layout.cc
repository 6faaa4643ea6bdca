#include "ucp/shard_layout.h"

#include <algorithm>
#include <cstring>

namespace ucp {

int64_t RankShard::SavedPadding(bool bf16_optimizer) const {
  if (!bf16_optimizer) return padding;
  return partition_rank == world - 1 ? total_padding : 0;
}

PerParamPiece PerParamShard(int64_t numel, int world, int rank) {
  PerParamPiece p;
  p.partition = (numel + world - 1) / world;
  p.offset = std::min(numel, rank * p.partition);
  p.valid = std::max<int64_t>(0, std::min(p.partition, numel - rank * p.partition));
  return p;
}

ShardLayout::ShardLayout(GroupSpec spec, const Topology& topology)
    : spec_(std::move(spec)),
      topology_(topology),
      world_(spec_.expert ? topology.edp() : topology.dp) {
  for (int64_t n : spec_.numels) total_ += n;
  if (spec_.kind == PartitionKind::kFlat) {
    const int64_t align = static_cast<int64_t>(std::max(spec_.alignment_factor, 1)) * world_;
    partition_size_ = (total_ + align - 1) / align * align / world_;
  } else {
    for (int64_t n : spec_.numels) partition_size_ += PerParamShard(n, world_, 0).partition;
  }
}

RankShard ShardLayout::Shard(int dp_rank) const {
  RankShard r;
  r.world = world_;
  r.size = partition_size_;
  if (spec_.expert) {
    const EpPlace place = topology_.PlaceOnEp(dp_rank);
    r.partition_rank = place.edp_rank;
    r.ep_rank = place.ep_rank;
  } else {
    r.partition_rank = dp_rank;
  }
  int64_t held = 0;
  int64_t start = 0;  // kFlat: the parameter's first flat element; kPerParam: its piece's place
  for (size_t i = 0; i < spec_.numels.size(); ++i) {
    const int64_t n = spec_.numels[i];
    ShardPiece piece;
    piece.param = static_cast<int>(i);
    if (spec_.kind == PartitionKind::kFlat) {
      const int64_t ps = r.partition_rank * partition_size_, pe = ps + partition_size_;
      const int64_t fs = std::max(start, ps), fe = std::min(start + n, pe);
      piece.param_offset = fs - start;
      piece.partition_offset = fs - ps;
      piece.numel = fe - fs;
      start += n;
    } else {
      const PerParamPiece p = PerParamShard(n, world_, r.partition_rank);
      piece.param_offset = p.offset;
      piece.partition_offset = start;
      piece.numel = p.valid;
      start += p.partition;
    }
    if (piece.numel <= 0) continue;
    piece.merged_offset = r.ep_rank * n + piece.param_offset;
    held += piece.numel;
    r.pieces.push_back(piece);
  }
  r.padding = partition_size_ - held;
  if (spec_.kind == PartitionKind::kFlat) r.total_padding = flat_length() - total_;
  return r;
}

std::vector<ShardLayout::Bytes> ShardLayout::Split(const std::vector<Bytes>& merged,
                                                   size_t elem_size) const {
  std::vector<Bytes> out(topology_.dp, Bytes(partition_size_ * elem_size, 0));
  for (int d = 0; d < topology_.dp; ++d) {
    for (const ShardPiece& p : Shard(d).pieces) {
      std::memcpy(out[d].data() + p.partition_offset * elem_size,
                  merged[p.param].data() + p.merged_offset * elem_size, p.numel * elem_size);
    }
  }
  return out;
}

std::vector<ShardLayout::Bytes> ShardLayout::Merge(const std::vector<Bytes>& partitions,
                                                   size_t elem_size) const {
  const int64_t ep = spec_.expert ? topology_.ep : 1;
  std::vector<Bytes> out;
  for (int64_t n : spec_.numels) out.emplace_back(ep * n * elem_size, 0);
  // Every merged element is held by exactly one DP rank (experts: one rank of its EP rank's
  // expert-DP group).
  for (int d = 0; d < topology_.dp; ++d) {
    for (const ShardPiece& p : Shard(d).pieces) {
      std::memcpy(out[p.param].data() + p.merged_offset * elem_size,
                  partitions[d].data() + p.partition_offset * elem_size, p.numel * elem_size);
    }
  }
  return out;
}

}  // namespace ucp
