// A tensor-parallel UCP as the ZeRO sink's input: each TP rank's slices cut from the merged
// tensors exactly as DeepSpeed's universal load cuts them, by the rules of the checkpoint's
// universal_checkpoint_info (plan/merge_rules.h: row / column, uneven vocabulary, sub-parameters,
// replicated and averaged parameters) applied to the param_shapes of the mp_rank_XX files the UCP
// keeps (ucp/tp_layout.h holds the cut). Only byte runs are computed.
#include <algorithm>
#include <memory>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "converters/plan/merge_rules.h"
#include "converters/plan/tree_edit.h"
#include "converters/sinks/zero/zero_sink_input.h"
#include "formats/base/cast_source.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/value_access.h"

namespace ucp::converters::sinks::internal_sink {
namespace {

namespace keys = formats::deepspeed::keys;
namespace ids = formats::deepspeed;

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
absl::StatusOr<TensorRuns> SliceRuns(const TensorRuns& merged, const ucp::TpLayout& layout,
                                     int rank, absl::string_view origin, absl::string_view what) {
  const uint64_t elem = DTypeSize(merged.dtype);
  std::vector<ucp::TpRun> runs;
  if (layout.cut.kind == ucp::TpMergeKind::kConcat) {
    for (const ucp::TpRun& r : layout.runs) {
      if (r.rank == rank) runs.push_back(r);
    }
    std::sort(runs.begin(), runs.end(), [](const ucp::TpRun& a, const ucp::TpRun& b) {
      return a.rank_offset < b.rank_offset;
    });
  } else {  // replicated, or averaged (the UCP holds the mean): every rank loads the whole tensor
    const int64_t numel = layout.view.NumElements().value_or(0);
    runs.push_back(ucp::TpRun{rank, 0, 0, numel});
  }
  std::vector<plan::Piece> pieces;
  for (const ucp::TpRun& r : runs) {
    UCP_RETURN_IF_ERROR(plan::SliceRuns(merged, static_cast<uint64_t>(r.merged_offset) * elem,
                                        static_cast<uint64_t>(r.numel) * elem, origin, what,
                                        &pieces));
  }
  TensorRuns out;
  out.dtype = merged.dtype;
  for (const plan::Piece& p : pieces)
    out.runs.push_back(ucp::ByteRun{p.source, p.source_offset, p.length});
  return out;
}

// Model states of TP rank 0 as a tp-1 run saves them: mp_world_size 1, tp_degree 1, the config's
// autotp_size 1 (the module and param_shapes are rebuilt by the writer).
Value* Tp1ModelStates(formats::torch::ValueArena& arena, const Value& rank0) {
  Value* root = plan::CopyDict(arena, rank0);
  if (root->Get(keys::kMpWorldSize) != nullptr)
    plan::SetOrReplace(arena, root, keys::kMpWorldSize, arena.Int(1));
  if (const Value* dims = root->Get(keys::kCheckpointParallelDimensions);
      dims != nullptr && dims->is_dict()) {
    Value* d = plan::CopyDict(arena, *dims);
    plan::SetOrReplace(arena, d, keys::kTpDegree, arena.Int(1));
    plan::SetOrReplace(arena, root, keys::kCheckpointParallelDimensions, d);
  }
  const Value* config = root->Get(keys::kDsConfig);
  const Value* tp =
      config != nullptr && config->is_dict() ? config->Get("tensor_parallel") : nullptr;
  if (tp != nullptr && tp->is_dict() && tp->Get("autotp_size") != nullptr) {
    Value* t = plan::CopyDict(arena, *tp);
    plan::SetOrReplace(arena, t, "autotp_size", arena.Int(1));
    Value* c = plan::CopyDict(arena, *config);
    plan::SetOrReplace(arena, c, "tensor_parallel", t);
    plan::SetOrReplace(arena, root, keys::kDsConfig, c);
  }
  return root;
}

// Module entries that are not trainable parameters (frozen parameters, buffers) are taken from TP
// rank 0: they must be the same shape on every rank (not TP-sliced).
absl::Status CheckReplicatedModuleEntries(const ZeroSinkInput& in,
                                          const std::vector<const Value*>& roots,
                                          const std::vector<std::string>& paths) {
  absl::flat_hash_set<std::string> trainable;
  for (const SinkParam& p : in.params) trainable.insert(p.name);
  const Value* module0 = roots[0]->Get(keys::kModule);
  if (module0 == nullptr || !module0->is_dict()) {
    return absl::DataLossError(absl::StrCat(paths[0], ": no module state dict"));
  }
  for (const auto& [k, v] : module0->entries()) {
    if (!k->is(formats::torch::ValueKind::kStr) || trainable.contains(k->str()) ||
        !v->is(formats::torch::ValueKind::kTensor)) {
      continue;
    }
    for (size_t t = 1; t < roots.size(); ++t) {
      const Value* m = roots[t]->Get(keys::kModule);
      const Value* other = m != nullptr ? m->Get(k->str()) : nullptr;
      if (other == nullptr || !other->is(formats::torch::ValueKind::kTensor) ||
          other->tensor().shape != v->tensor().shape) {
        return absl::UnimplementedError(
            absl::StrCat(paths[t], ": module entry '", k->str(),
                         "' is TP-sliced and not trainable: merging it is not supported"));
      }
    }
  }
  return absl::OkStatus();
}

// The module dtype (the lp weights) of TP rank 0's module, `fallback` without tensors.
DType ModuleDtype(const Value& root, DType fallback) {
  const Value* module = root.Get(keys::kModule);
  if (module == nullptr || !module->is_dict()) return fallback;
  for (const auto& [k, v] : module->entries()) {
    if (v->is(formats::torch::ValueKind::kTensor)) return v->tensor().dtype;
  }
  return fallback;
}

}  // namespace

absl::StatusOr<ZeroSinkInput> MergeTpRanks(ZeroSinkInput merged,
                                           const std::vector<const Value*>& roots,
                                           const std::vector<std::string>& paths) {
  UCP_RETURN_IF_ERROR(CheckReplicatedModuleEntries(merged, roots, paths));
  auto arena = std::make_shared<formats::torch::ValueArena>();
  merged.model_root = Tp1ModelStates(*arena, *roots[0]);
  merged.owners.push_back(arena);
  merged.module_per_tensor = true;
  merged.topology.tp = 1;
  merged.mp_rank = 0;
  if (const Value* shared = roots[0]->Get(keys::kSharedParams);
      shared != nullptr && shared->is_dict()) {
    for (const auto& [k, v] : shared->entries()) {
      if (k->is(formats::torch::ValueKind::kStr) && v->is(formats::torch::ValueKind::kStr)) {
        merged.shared_params.emplace_back(k->str(), v->str());
      }
    }
  }
  // The module's weights: the fp32 masters, in the module's dtype (cast as torch's copy_ does).
  for (SinkParam& p : merged.params) {
    const TensorRuns& master = p.states[0];
    const DType dtype = ModuleDtype(*roots[0], master.dtype);
    if (dtype == master.dtype) {
      p.weight = master;
      continue;
    }
    std::vector<CastInputRun> input;
    for (const ucp::ByteRun& r : master.runs)
      input.push_back(CastInputRun{merged.sources[r.file], r.offset, r.size});
    UCP_ASSIGN_OR_RETURN(
        std::shared_ptr<ByteSource> cast,
        CastingSource(std::move(input), master.dtype, dtype, p.shape.NumElements().value_or(0),
                      absl::StrCat("<", p.name, " as ", DTypeName(dtype), ">")));
    const uint64_t size = cast->Size();
    merged.sources.push_back(std::move(cast));
    p.weight =
        TensorRuns{dtype, {ucp::ByteRun{static_cast<int>(merged.sources.size()) - 1, 0, size}}};
  }
  return merged;
}

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
