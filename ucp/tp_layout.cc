#include "ucp/tp_layout.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"

namespace ucp {
namespace {

int64_t Product(absl::Span<const int64_t> dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

std::string Describe(absl::Span<const Shape> shapes) {
  std::string s;
  for (const Shape& shape : shapes) absl::StrAppend(&s, s.empty() ? "" : ", ", shape.ToString());
  return s;
}

// Checks every shape (elements countable) and that all have the rank of the first.
absl::Status CheckShapes(absl::Span<const Shape> shapes) {
  if (shapes.empty()) return absl::InvalidArgumentError("no TP ranks to merge");
  for (const Shape& s : shapes) {
    UCP_RETURN_IF_ERROR(s.NumElements().status());
    if (s.rank() != shapes[0].rank()) {
      return absl::InvalidArgumentError(
          absl::StrCat("TP slices of different ranks: ", Describe(shapes)));
    }
  }
  return absl::OkStatus();
}

absl::Status FillView(TpLayout* layout) {
  layout->view = layout->merged;
  if (!layout->cut.view_rows) return absl::OkStatus();
  if (layout->merged.rank() < 1 || *layout->cut.view_rows < 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot keep ", *layout->cut.view_rows,
                                                   " rows of a tensor of shape ",
                                                   layout->merged.ToString()));
  }
  std::vector<int64_t> dims(layout->merged.dims().begin(), layout->merged.dims().end());
  dims[0] = std::min(dims[0], *layout->cut.view_rows);  // Python slicing clamps
  layout->view = Shape(std::move(dims));
  return absl::OkStatus();
}

absl::Status MergeWhole(absl::Span<const Shape> rank_shapes, TpLayout* layout) {
  for (const Shape& s : rank_shapes) {
    if (s != rank_shapes[0]) {
      return absl::InvalidArgumentError(
          absl::StrCat(layout->cut.kind == TpMergeKind::kAverage ? "averaged" : "replicated",
                       " parameter has different shapes on its TP ranks: ", Describe(rank_shapes)));
    }
  }
  layout->merged = rank_shapes[0];
  const int64_t numel = Product(rank_shapes[0].dims());
  if (numel > 0) layout->runs.push_back(TpRun{0, 0, 0, numel});
  return absl::OkStatus();
}

absl::Status MergeConcat(absl::Span<const Shape> rank_shapes, TpLayout* layout) {
  const int tp = static_cast<int>(rank_shapes.size());
  const Shape& first = rank_shapes[0];
  TpCut& cut = layout->cut;
  if (cut.dim < 0 || cut.dim >= first.rank()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot concatenate TP slices ", Describe(rank_shapes), " along dimension ", cut.dim));
  }
  for (const Shape& s : rank_shapes) {
    for (int d = 0; d < s.rank(); ++d) {
      if (d != cut.dim && s.dim(d) != first.dim(d)) {
        return absl::InvalidArgumentError(
            absl::StrCat("TP slices ", Describe(rank_shapes),
                         " differ outside the concatenation dimension ", cut.dim));
      }
    }
  }
  if (cut.widths.empty()) {
    std::vector<int64_t> sizes;
    for (const Shape& s : rank_shapes) sizes.push_back(s.dim(cut.dim));
    cut.widths.push_back(std::move(sizes));
  }
  std::vector<std::vector<int64_t>> rank_offsets(cut.widths.size(), std::vector<int64_t>(tp, 0));
  std::vector<int64_t> rank_sizes(tp, 0);
  int64_t merged_size = 0;
  for (size_t k = 0; k < cut.widths.size(); ++k) {
    if (static_cast<int>(cut.widths[k].size()) != tp) {
      return absl::InvalidArgumentError(absl::StrCat("sub-parameter ", k, " has ",
                                                     cut.widths[k].size(), " shard widths for ", tp,
                                                     " TP ranks"));
    }
    for (int r = 0; r < tp; ++r) {
      const int64_t w = cut.widths[k][r];
      if (w < 0 || w > rank_shapes[r].dim(cut.dim)) {  // also bounds the sums below
        return absl::InvalidArgumentError(
            absl::StrCat("shard width ", w, " of sub-parameter ", k, " on TP rank ", r));
      }
      rank_offsets[k][r] = rank_sizes[r];
      rank_sizes[r] += w;
      merged_size += w;
    }
  }
  for (int r = 0; r < tp; ++r) {
    if (rank_sizes[r] != rank_shapes[r].dim(cut.dim)) {
      return absl::InvalidArgumentError(
          absl::StrCat("shard widths of TP rank ", r, " sum to ", rank_sizes[r], ", its slice ",
                       rank_shapes[r].ToString(), " has ", rank_shapes[r].dim(cut.dim),
                       " along dimension ", cut.dim));
    }
  }
  std::vector<int64_t> dims(first.dims().begin(), first.dims().end());
  dims[cut.dim] = merged_size;
  layout->merged = Shape(dims);
  UCP_RETURN_IF_ERROR(layout->merged.NumElements().status());
  const int64_t outer = Product(absl::MakeConstSpan(dims).subspan(0, cut.dim));
  const int64_t inner = Product(absl::MakeConstSpan(dims).subspan(cut.dim + 1));
  for (int64_t o = 0; o < outer; ++o) {
    int64_t merged_pos = 0;
    for (size_t k = 0; k < cut.widths.size(); ++k) {
      for (int r = 0; r < tp; ++r) {
        const int64_t w = cut.widths[k][r];
        const TpRun run{r, (o * rank_sizes[r] + rank_offsets[k][r]) * inner,
                        (o * merged_size + merged_pos) * inner, w * inner};
        merged_pos += w;
        if (run.numel == 0) continue;
        if (!layout->runs.empty()) {
          TpRun& last = layout->runs.back();
          if (last.rank == run.rank && last.rank_offset + last.numel == run.rank_offset &&
              last.merged_offset + last.numel == run.merged_offset) {
            last.numel += run.numel;
            continue;
          }
        }
        layout->runs.push_back(run);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<int64_t> ChunkWidths(int64_t n, int parts) {
  std::vector<int64_t> widths(std::max(parts, 0), 0);
  if (parts <= 0) return widths;
  const int64_t chunk = (n + parts - 1) / parts;
  int64_t left = n;
  for (int i = 0; i < parts; ++i) {
    widths[i] = std::min(chunk, left);
    left -= widths[i];
  }
  return widths;
}

absl::StatusOr<std::vector<std::vector<int64_t>>> TwoSubParamWidths(
    absl::Span<const Shape> rank_shapes) {
  std::vector<std::vector<int64_t>> widths(2);
  for (size_t r = 0; r < rank_shapes.size(); ++r) {
    const Shape& s = rank_shapes[r];
    if (s.rank() < 1 || s.dim(0) < 2) {
      return absl::FailedPreconditionError(
          absl::StrCat("TP rank ", r, "'s slice ", s.ToString(),
                       " cannot be split into 2 sub-parameters along dimension 0"));
    }
    const std::vector<int64_t> halves = ChunkWidths(s.dim(0), 2);
    widths[0].push_back(halves[0]);
    widths[1].push_back(halves[1]);
  }
  return widths;
}

absl::StatusOr<TpLayout> Merge(absl::Span<const Shape> rank_shapes, const TpCut& cut) {
  UCP_RETURN_IF_ERROR(CheckShapes(rank_shapes));
  TpLayout layout;
  layout.cut = cut;
  layout.ranks.assign(rank_shapes.begin(), rank_shapes.end());
  if (cut.kind == TpMergeKind::kConcat) {
    UCP_RETURN_IF_ERROR(MergeConcat(rank_shapes, &layout));
  } else {
    UCP_RETURN_IF_ERROR(MergeWhole(rank_shapes, &layout));
  }
  UCP_RETURN_IF_ERROR(FillView(&layout));
  return layout;
}

absl::StatusOr<TpLayout> Split(const Shape& full, const TpCut& cut, int tp) {
  if (tp < 1) return absl::InvalidArgumentError(absl::StrCat("tp size ", tp));
  UCP_RETURN_IF_ERROR(full.NumElements().status());
  if (cut.kind != TpMergeKind::kConcat) return Merge(std::vector<Shape>(tp, full), cut);
  if (cut.dim < 0 || cut.dim >= full.rank()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot split ", full.ToString(), " along dimension ", cut.dim));
  }
  TpCut c = cut;
  if (c.widths.empty()) c.widths.push_back(ChunkWidths(full.dim(c.dim), tp));
  std::vector<Shape> ranks;
  for (int r = 0; r < tp; ++r) {
    int64_t size = 0;
    for (const auto& w : c.widths) {
      if (static_cast<int>(w.size()) != tp) {
        return absl::InvalidArgumentError(
            absl::StrCat("shard widths ", w.size(), " for ", tp, " TP ranks"));
      }
      size += w[r];
    }
    std::vector<int64_t> dims(full.dims().begin(), full.dims().end());
    dims[c.dim] = size;
    ranks.push_back(Shape(std::move(dims)));
  }
  UCP_ASSIGN_OR_RETURN(TpLayout layout, Merge(ranks, c));
  if (layout.merged != full) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard widths give ", layout.merged.ToString(), ", not ", full.ToString()));
  }
  return layout;
}

std::vector<uint8_t> MergeBytes(const TpLayout& layout,
                                const std::vector<std::vector<uint8_t>>& ranks, size_t elem_size) {
  std::vector<uint8_t> merged(static_cast<size_t>(Product(layout.merged.dims())) * elem_size);
  for (const TpRun& run : layout.runs) {
    std::memcpy(merged.data() + run.merged_offset * elem_size,
                ranks[run.rank].data() + run.rank_offset * elem_size, run.numel * elem_size);
  }
  return merged;
}

std::vector<std::vector<uint8_t>> SplitBytes(const TpLayout& layout,
                                             absl::Span<const uint8_t> merged, size_t elem_size) {
  std::vector<std::vector<uint8_t>> ranks;
  for (const Shape& s : layout.ranks)
    ranks.emplace_back(static_cast<size_t>(Product(s.dims())) * elem_size);
  if (layout.cut.kind != TpMergeKind::kConcat) {
    for (auto& r : ranks) std::memcpy(r.data(), merged.data(), r.size());
    return ranks;
  }
  for (const TpRun& run : layout.runs) {
    std::memcpy(ranks[run.rank].data() + run.rank_offset * elem_size,
                merged.data() + run.merged_offset * elem_size, run.numel * elem_size);
  }
  return ranks;
}

}  // namespace ucp
