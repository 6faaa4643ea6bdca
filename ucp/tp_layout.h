// TpLayout: a pure description of how a tensor-parallel (TP) parameter is cut into per-rank slices
// and merged back (deepspeed-formats.md §5.1, §5.2, §5.2.1, §6.4), as element runs between each
// rank's row-major slice and the row-major merged tensor. No bytes are touched here: converters
// turn runs into copy operations, tests apply them to buffers (MergeBytes / SplitBytes).
//
// Every cut that moves bytes is "concatenate pieces along one dimension `dim`": the merged tensor
// is, along `dim`, sub-parameter 0 of rank 0, of rank 1, ..., then sub-parameter 1 of rank 0, ...;
// rank r holds, along `dim`, its widths[0][r] rows of sub-parameter 0, then widths[1][r] rows of
// sub-parameter 1, ... Plain column/row parallelism is one sub-parameter (cat_dim 0 / 1);
// parameter_with_2_sub_params_cat_dim_0 is two (torch.chunk halves of each slice); fused QKV with
// sub_param_shard_widths is one per projection. Replicated and averaged parameters have the same
// shape on every rank: replicated merges to rank 0's slice, averaged to their element-wise mean
// (computed by the caller: runs then describe rank 0 only).
// A vocabulary parameter is merged like any other; `view_rows` then keeps its first rows (the
// merged storage keeps the padding rows, as DeepSpeed's slice view does).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "formats/base/shape.h"

namespace ucp {

enum class TpMergeKind : uint8_t {
  kConcat,      // pieces concatenated along `dim` (widths: one or more sub-parameters)
  kReplicated,  // every rank holds the whole tensor; merged = rank 0
  kAverage,     // every rank holds the whole tensor; merged = mean over ranks
};

struct TpCut {
  TpMergeKind kind = TpMergeKind::kConcat;
  int dim = 0;
  // kConcat: widths[k][r] = rows of sub-parameter k on rank r along `dim`. Empty in Merge: one
  // sub-parameter whose widths are the ranks' sizes along `dim`. Empty in Split: torch.chunk of
  // the full size over the ranks.
  std::vector<std::vector<int64_t>> widths;
  std::optional<int64_t> view_rows;  // vocabulary: rows kept after the merge (clamped)
};

// A run of `numel` elements: rank `rank`'s slice from `rank_offset` ↔ the merged tensor from
// `merged_offset` (element indices of the row-major flattened tensors).
struct TpRun {
  int rank = 0;
  int64_t rank_offset = 0;
  int64_t merged_offset = 0;
  int64_t numel = 0;
  friend bool operator==(const TpRun&, const TpRun&) = default;
};

struct TpLayout {
  TpCut cut;     // widths filled in
  Shape merged;  // the merged tensor (its storage, for vocabulary)
  Shape view;    // what the UCP file's tensor shows: merged, or its first view_rows rows
  std::vector<Shape> ranks;  // each rank's slice
  // kConcat: runs tile the merged tensor in merged order, adjacent runs fused. kReplicated and
  // kAverage: one run covering rank 0's slice.
  std::vector<TpRun> runs;
};

// torch.chunk(n, parts): chunk size ceil(n / parts), the last smaller, trailing chunks empty.
std::vector<int64_t> ChunkWidths(int64_t n, int parts);
// parameter_with_2_sub_params_cat_dim_0: each slice's torch.chunk(2, dim 0) halves as widths.
// FailedPrecondition when a slice has fewer than 2 rows (torch.chunk would give one chunk).
absl::StatusOr<std::vector<std::vector<int64_t>>> TwoSubParamWidths(
    absl::Span<const Shape> rank_shapes);

// The layout that merges slices of these shapes (what a checkpoint's param_shapes say).
// InvalidArgument when the shapes cannot be merged by `cut`: no ranks, different ranks, shapes that
// differ outside `dim` (or at all, for replicated/average), widths that do not sum to a rank's
// size.
absl::StatusOr<TpLayout> Merge(absl::Span<const Shape> rank_shapes, const TpCut& cut);

// The layout that cuts a tensor of shape `full` over `tp` ranks; Merge of its rank shapes with
// its cut gives the same layout (exact inverses). InvalidArgument when `cut` cannot apply.
absl::StatusOr<TpLayout> Split(const Shape& full, const TpCut& cut, int tp);

// Reference byte movers for tests and small tensors: rank slices (row-major, elem_size bytes per
// element) into the merged tensor and back. The sizes must match the layout.
std::vector<uint8_t> MergeBytes(const TpLayout& layout,
                                const std::vector<std::vector<uint8_t>>& ranks, size_t elem_size);
std::vector<std::vector<uint8_t>> SplitBytes(const TpLayout& layout,
                                             absl::Span<const uint8_t> merged, size_t elem_size);

}  // namespace ucp
