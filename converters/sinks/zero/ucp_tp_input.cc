// A tensor-parallel UCP as the ZeRO sink's input: each TP rank's slices cut from the merged
// tensors exactly as DeepSpeed's universal load cuts them, by the rules of the checkpoint's
// universal_checkpoint_info (plan/merge_rules.h: row / column, uneven vocabulary, sub-parameters,
// replicated and averaged parameters) applied to the param_shapes of the mp_rank_XX files the UCP
// keeps (ucp/tp_layout.h holds the cut). Only byte runs are computed.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "converters/deepspeed/deepspeed_keys.h"
#include "converters/deepspeed/value_access.h"
#include "converters/plan/merge_rules.h"
#include "converters/sinks/zero/zero_sink_input.h"
#include "formats/base/status.h"

namespace ucp::converters::sinks::internal_sink {
namespace {

namespace keys = deepspeed::keys;
namespace ids = deepspeed::internal_ds;

// name → shape of one model-states file's param_shapes (every group).
absl::StatusOr<absl::flat_hash_map<std::string, Shape>> ParamShapes(const Value& root,
                                                                    const std::string& path) {
  absl::flat_hash_map<std::string, Shape> out;
  const std::string what = absl::StrCat(path, ": ", keys::kParamShapes);
  UCP_ASSIGN_OR_RETURN(const Value* v, ids::Require(root, keys::kParamShapes, path));
  UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> groups, ids::AsSequence(v, what));
  for (const Value* g : groups) {
    UCP_ASSIGN_OR_RETURN(const Value* d, ids::AsDict(g, what));
    for (const auto& [k, s] : d->entries()) {
      UCP_ASSIGN_OR_RETURN(std::string name, ids::AsStr(k, what));
      UCP_ASSIGN_OR_RETURN(out[name], ids::AsShape(s, absl::StrCat(what, "['", name, "']")));
    }
  }
  return out;
}

// TP rank `rank`'s slice of one state of a merged parameter, as runs of the merged runs.
absl::StatusOr<TensorRuns> SliceRuns(const TensorRuns& merged, const store::TpLayout& layout,
                                     int rank, absl::string_view origin, absl::string_view what) {
  const uint64_t elem = DTypeSize(merged.dtype);
  std::vector<store::TpRun> runs;
  if (layout.cut.kind == store::TpMergeKind::kConcat) {
    for (const store::TpRun& r : layout.runs) {
      if (r.rank == rank) runs.push_back(r);
    }
    std::sort(runs.begin(), runs.end(), [](const store::TpRun& a, const store::TpRun& b) {
      return a.rank_offset < b.rank_offset;
    });
  } else {  // replicated, or averaged (the UCP holds the mean): every rank loads the whole tensor
    const int64_t numel = layout.view.NumElements().value_or(0);
    runs.push_back(store::TpRun{rank, 0, 0, numel});
  }
  std::vector<plan::Piece> pieces;
  for (const store::TpRun& r : runs) {
    UCP_RETURN_IF_ERROR(plan::SliceRuns(merged, static_cast<uint64_t>(r.merged_offset) * elem,
                                        static_cast<uint64_t>(r.numel) * elem, origin, what,
                                        &pieces));
  }
  TensorRuns out;
  out.dtype = merged.dtype;
  for (const plan::Piece& p : pieces)
    out.runs.push_back(store::ByteRun{p.source, p.source_offset, p.length});
  return out;
}

}  // namespace

absl::StatusOr<TpCuts> TpCutsOf(const std::vector<const Value*>& roots,
                                const std::vector<std::string>& paths) {
  UCP_ASSIGN_OR_RETURN(deepspeed::UniversalCheckpointInfo info,
                       deepspeed::ParseUniversalCheckpointInfo(*roots[0], paths[0]));
  UCP_ASSIGN_OR_RETURN(plan::internal_plan::MergeRules rules,
                       plan::internal_plan::MergeRules::Create(info));
  std::vector<absl::flat_hash_map<std::string, Shape>> shapes;
  for (size_t t = 0; t < roots.size(); ++t) {
    UCP_ASSIGN_OR_RETURN(auto s, ParamShapes(*roots[t], paths[t]));
    shapes.push_back(std::move(s));
  }
  TpCuts cuts;
  for (const auto& [name, shape0] : shapes[0]) {
    std::vector<Shape> rank_shapes;
    for (size_t t = 0; t < shapes.size(); ++t) {
      auto it = shapes[t].find(name);
      if (it == shapes[t].end()) {
        return absl::DataLossError(absl::StrCat(paths[t], ": param_shapes has no '", name, "'"));
      }
      rank_shapes.push_back(it->second);
    }
    absl::StatusOr<plan::internal_plan::ParamKeys> k = rules.ForParam(name, rank_shapes);
    if (!k.ok()) return WithContext(k.status(), paths[0]);
    if (k->layout.merged != k->layout.view) {
      return absl::UnimplementedError(
          absl::StrCat(paths[0], ": '", name, "' is a padded vocabulary (",
                       k->layout.merged.ToString(), " stored, ", k->layout.view.ToString(),
                       " in the UCP): cutting it from a UCP is not supported"));
    }
    cuts.merged_shapes[name] = k->layout.view;
    cuts.layouts[name] = std::move(k->layout);
  }
  return cuts;
}

absl::StatusOr<std::vector<ZeroSinkInput>> SplitTpRanks(const ZeroSinkInput& merged,
                                                        const std::vector<const Value*>& roots,
                                                        const TpCuts& cuts) {
  std::vector<ZeroSinkInput> out;
  for (int t = 0; t < static_cast<int>(roots.size()); ++t) {
    ZeroSinkInput rank = merged;
    rank.mp_rank = t;
    rank.model_root = roots[t];
    for (SinkParam& p : rank.params) {
      auto it = cuts.layouts.find(p.name);
      if (it == cuts.layouts.end()) {
        return absl::InternalError(absl::StrCat(merged.origin, ": no TP cut for '", p.name, "'"));
      }
      p.shape = it->second.ranks[t];
      for (int s = 0; s < deepspeed::kNumStates; ++s) {
        UCP_ASSIGN_OR_RETURN(p.states[s], SliceRuns(p.states[s], it->second, t, merged.origin,
                                                    absl::StrCat("'", p.name, "'")));
      }
    }
    out.push_back(std::move(rank));
  }
  return out;
}

}  // namespace ucp::converters::sinks::internal_sink
