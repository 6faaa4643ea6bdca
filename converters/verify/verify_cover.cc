// Coverage and padding checks over an opened CheckpointIndex (verify_internal.h). OpenCheckpoint
// establishes these while indexing; verify re-derives them from the fragments so that the report
// states them explicitly and names the parameter and rank that break one.
#include <algorithm>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/verify/verify_internal.h"

namespace ucp::converters::verify::internal_verify {
namespace {

namespace ds = ::ucp::converters::deepspeed;
namespace dsf = ::ucp::formats::deepspeed;

const std::string& FileOf(const ds::CheckpointIndex& index, int file) {
  static const std::string kUnknown;
  return file >= 0 && static_cast<size_t>(file) < index.files.size() ? index.files[file].basename
                                                                     : kUnknown;
}

// One slice: per EP rank, the fragments (sorted by offset) tile [0, numel) with no gap or overlap,
// and each state's run has the fragment's numel and lies inside its file.
void CheckSlice(const ds::CheckpointIndex& index, const ds::Parameter& param,
                const ds::ParamSlice& slice, VerifyReport& report) {
  absl::StatusOr<int64_t> numel = slice.shape.NumElements();
  if (!numel.ok()) {
    report.problems.push_back(
        {"cover", "", absl::StrCat(param.name, ": ", numel.status().message())});
    return;
  }
  std::map<int, std::vector<const ds::Fragment*>> by_ep;
  for (const ds::Fragment& f : slice.fragments) by_ep[f.ep_rank].push_back(&f);
  for (auto& [ep_rank, frags] : by_ep) {
    std::sort(frags.begin(), frags.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    int64_t next = 0;
    for (const ds::Fragment* f : frags) {
      const std::string& file = FileOf(index, f->state(ds::StateKind::kFp32).file);
      if (f->offset != next) {
        report.problems.push_back(
            {"cover", file,
             absl::StrCat(param.name, " (mp rank ", slice.mp_rank, ", ep rank ", ep_rank,
                          "): elements [", std::min(next, f->offset), ", ",
                          std::max(next, f->offset), ") ",
                          f->offset > next ? "held by no rank" : "held twice", " (dp rank ",
                          f->dp_rank, ")")});
      }
      next = std::max(next, f->offset + f->numel);
      for (ds::StateKind s : ds::kAllStates) {
        const ds::TensorLocation& loc = f->state(s);
        const std::string& state_file = FileOf(index, loc.file);
        if (loc.numel != f->numel) {
          report.problems.push_back(
              {"cover", state_file,
               absl::StrCat(param.name, ": ", ds::StateName(s), " of dp rank ", f->dp_rank, " has ",
                            loc.numel, " elements, the fragment ", f->numel)});
        }
        if (loc.file >= 0 && static_cast<size_t>(loc.file) < index.files.size()) {
          const uint64_t size = index.files[loc.file].torch->zip().source().Size();
          if (loc.file_offset > size || loc.num_bytes() > size - loc.file_offset) {
            report.problems.push_back(
                {"cover", state_file,
                 absl::StrCat(param.name, ": ", ds::StateName(s), " runs past the end")});
          }
        }
      }
    }
    if (next != *numel) {
      report.problems.push_back(
          {"cover", "",
           absl::StrCat(param.name, " (mp rank ", slice.mp_rank, ", ep rank ", ep_rank,
                        "): fragments cover ", next, " of ", *numel, " elements")});
    }
  }
}

// Each (mp, dp) rank's partition of a flat group holds its fragments plus `padding`; in ZeRO-1/2
// (one flat buffer cut in equal parts) padding sits at the end, so only trailing ranks have any.
void CheckPartitions(const ds::CheckpointIndex& index, const ds::FlatGroup& group,
                     VerifyReport& report) {
  std::map<std::pair<int, int>, int64_t> held;  // (mp, dp) → fragment elements
  for (int p : group.params) {
    for (const ds::ParamSlice& slice : index.params[p].slices) {
      for (const ds::Fragment& f : slice.fragments) held[{slice.mp_rank, f.dp_rank}] += f.numel;
    }
  }
  const bool zero12 = index.kind.zero_stage < 3;
  std::map<int, bool> seen_padding;  // mp rank → an earlier rank had padding
  for (const ds::FlatGroupRank& r : group.ranks) {
    const int64_t fragments = held[{r.mp_rank, r.dp_rank}];
    if (fragments == 0 && r.partition_numel == 0) continue;  // not a rank of this (expert) group
    const std::string file =
        r.mp_rank * index.topology.dp + r.dp_rank < static_cast<int>(index.optim_files.size())
            ? FileOf(index, index.optim_files[r.mp_rank * index.topology.dp + r.dp_rank])
            : std::string();
    if (r.padding < 0 || fragments + r.padding != r.partition_numel) {
      report.problems.push_back({"padding", file,
                                 absl::StrCat("group ", group.index, ": partition of ",
                                              r.partition_numel, " elements holds ", fragments,
                                              " of parameters + ", r.padding, " of padding")});
    }
    if (zero12 && seen_padding[r.mp_rank] && fragments > 0) {
      report.problems.push_back(
          {"padding", file,
           absl::StrCat("group ", group.index, ": dp rank ", r.dp_rank,
                        " holds parameters after a rank that holds padding")});
    }
    if (r.padding > 0) seen_padding[r.mp_rank] = true;
  }
}

}  // namespace

void CheckIndexCoverage(const ds::CheckpointIndex& index, VerifyReport& report) {
  for (const ds::Parameter& param : index.params) {
    for (const ds::ParamSlice& slice : param.slices) CheckSlice(index, param, slice, report);
  }
  for (const ds::FlatGroup& group : index.flat_groups) CheckPartitions(index, group, report);
  for (const ds::FrozenParam& frozen : index.frozen_params) {
    absl::StatusOr<int64_t> numel = frozen.shape.NumElements();
    int64_t held = 0;
    for (const ds::FrozenParam::Piece& piece : frozen.pieces) {
      if (piece.mp_rank == 0) held += piece.location.numel;
    }
    if (numel.ok() && held != *numel) {
      report.problems.push_back({"cover", "",
                                 absl::StrCat(frozen.name, " (frozen): pieces hold ", held, " of ",
                                              *numel, " elements")});
    }
  }
}

}  // namespace ucp::converters::verify::internal_verify
