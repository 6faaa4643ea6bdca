#include "converters/plan/zero3_input.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "converters/deepspeed/deepspeed_keys.h"
#include "converters/deepspeed/value_access.h"
#include "formats/base/status.h"
#include "ucp/shard_layout.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::plan {
namespace {

namespace keys = deepspeed::keys;
namespace ids = deepspeed::internal_ds;
using deepspeed::CheckpointIndex;
using deepspeed::StateKind;
using formats::torch::StorageRef;
using formats::torch::TensorRef;
using formats::torch::TorchFile;
using formats::torch::Value;
using formats::torch::ValueKind;

// Adds `file` as source `files.size()` and locates its storages.
absl::Status AddFile(std::shared_ptr<const TorchFile> file, Zero3Input* in) {
  const int fi = static_cast<int>(in->files.size());
  for (const StorageRef* s : file->storages()) {
    UCP_ASSIGN_OR_RETURN(const formats::zip::ZipEntry* entry, file->StorageEntry(*s));
    in->storage_runs[s] = store::ByteRun{fi, entry->data_offset, entry->size};
  }
  in->files.push_back(std::move(file));
  return absl::OkStatus();
}

// The first `numel` elements of a contiguous tensor, as one run; checked against its record.
absl::StatusOr<store::ByteRun> TensorRun(const Zero3Input& in, const TensorRef& t, int64_t numel,
                                         absl::string_view what) {
  if (!t.IsContiguous() || numel < 0 || numel > t.NumElements()) {
    return absl::DataLossError(absl::StrCat(what, ": expected a contiguous tensor of at least ", numel,
                                            " elements, found shape ", t.shape.ToString()));
  }
  auto it = in.storage_runs.find(t.storage);
  if (it == in.storage_runs.end()) return absl::InternalError(absl::StrCat(what, ": storage not located"));
  const uint64_t elem = DTypeSize(t.dtype);
  const uint64_t begin = static_cast<uint64_t>(t.storage_offset) * elem;
  const uint64_t size = static_cast<uint64_t>(numel) * elem;
  if (t.storage_offset < 0 || begin + size > it->second.size) {
    return absl::DataLossError(absl::StrCat(what, ": tensor runs past its storage record (", it->second.size,
                                            " bytes)"));
  }
  return store::ByteRun{it->second.file, it->second.offset + begin, size};
}

absl::Status CheckTopology(const CheckpointIndex& index) {
  const store::Topology& t = index.topology;
  const deepspeed::ZeroKind& zk = index.kind;
  if (zk.zero_stage != 3) {
    return absl::FailedPreconditionError(absl::StrCat(index.dir.tag_dir, ": ZeRO-", zk.zero_stage,
                                                      " checkpoint; the ZeRO-3 planner reads ZeRO-3 only"));
  }
  if (t.tp != 1 || t.pp != 1) {
    return absl::UnimplementedError(absl::StrCat(index.dir.tag_dir, ": ZeRO-3 with tp=", t.tp, ", pp=",
                                                 t.pp, " (only tp = pp = 1 is resharded)"));
  }
  return absl::OkStatus();
}

// ds_autoep_layers of a model-states root (legacy name too); empty when absent.
absl::StatusOr<std::vector<const Value*>> AutoepLayers(const Value& root, absl::string_view what) {
  const Value* v = root.Get(keys::kDsAutoepLayers);
  if (v == nullptr || v->is_none()) v = root.Get(keys::kAutoepLayersLegacy);
  if (v == nullptr || v->is_none()) return std::vector<const Value*>{};
  UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> items, ids::AsSequence(v, what));
  return std::vector<const Value*>(items.begin(), items.end());
}

// name → num_experts for every fused expert weight of the AutoEP layers; also the source ep.
absl::StatusOr<absl::flat_hash_map<std::string, int>> ExpertNames(const Value& root, absl::string_view what,
                                                                  int* ep) {
  absl::flat_hash_map<std::string, int> out;
  UCP_ASSIGN_OR_RETURN(std::vector<const Value*> layers, AutoepLayers(root, what));
  for (const Value* layer : layers) {
    UCP_ASSIGN_OR_RETURN(const Value* d, ids::AsDict(layer, what));
    UCP_ASSIGN_OR_RETURN(const Value* prefix_v, ids::Require(*d, keys::kExpertKeyPrefix, what));
    UCP_ASSIGN_OR_RETURN(std::string prefix, ids::AsStr(prefix_v, what));
    UCP_ASSIGN_OR_RETURN(const Value* n_v, ids::Require(*d, keys::kNumExperts, what));
    UCP_ASSIGN_OR_RETURN(int64_t n, ids::AsIntIn(n_v, 1, 1 << 20, what));
    UCP_ASSIGN_OR_RETURN(const Value* ep_v, ids::Require(*d, keys::kEpSize, what));
    UCP_ASSIGN_OR_RETURN(int64_t e, ids::AsIntIn(ep_v, 1, 1 << 20, what));
    *ep = static_cast<int>(e);
    for (absl::string_view w : keys::kAutoepFusedWeights) out[absl::StrCat(prefix, ".", w)] = static_cast<int>(n);
  }
  return out;
}

absl::StatusOr<std::shared_ptr<const TorchFile>> OpenTorch(const std::string& path) {
  UCP_ASSIGN_OR_RETURN(TorchFile f, TorchFile::OpenPath(path));
  return std::make_shared<const TorchFile>(std::move(f));
}

std::string ModelFileName(int dp) { return absl::StrCat("zero_pp_rank_", dp, "_mp_rank_00_model_states.pt"); }

// Frozen parameters from the source ranks' model files (each a padded P-element partition).
absl::Status AddFrozenFromModelFiles(const std::vector<const Value*>& roots, const std::vector<std::string>& paths,
                                     Zero3Input* in) {
  const Value* shapes = roots[0]->Get(keys::kFrozenParamShapes);
  if (shapes == nullptr || shapes->is_none()) return absl::OkStatus();
  const std::string what = absl::StrCat(paths[0], ": ", keys::kFrozenParamShapes);
  UCP_ASSIGN_OR_RETURN(const Value* dict, ids::AsDict(shapes, what));
  const int world = static_cast<int>(roots.size());
  for (const auto& [k, v] : dict->entries()) {
    UCP_ASSIGN_OR_RETURN(std::string name, ids::AsStr(k, what));
    Zero3Frozen f;
    f.name = name;
    UCP_ASSIGN_OR_RETURN(f.shape, ids::AsShape(v, absl::StrCat(what, "['", name, "']")));
    UCP_ASSIGN_OR_RETURN(const int64_t numel, f.shape.NumElements());
    for (int r = 0; r < world; ++r) {
      const store::PerParamPiece piece = store::PerParamShard(numel, world, r);
      const std::string w = absl::StrCat(paths[r], ": ", keys::kFrozenParamFragments, "['", name, "']");
      UCP_ASSIGN_OR_RETURN(const Value* frags, ids::Require(*roots[r], keys::kFrozenParamFragments, paths[r]));
      UCP_ASSIGN_OR_RETURN(const Value* fd, ids::AsDict(frags, w));
      UCP_ASSIGN_OR_RETURN(const Value* tv, ids::Require(*fd, name, w));
      UCP_ASSIGN_OR_RETURN(const TensorRef* t, ids::AsTensor(tv, w, /*flat=*/true));
      if (t->NumElements() != piece.partition) {
        return absl::DataLossError(absl::StrCat(w, ": ", t->NumElements(), " elements, expected ", piece.partition));
      }
      f.bytes.dtype = t->dtype;
      UCP_ASSIGN_OR_RETURN(store::ByteRun run, TensorRun(*in, *t, piece.valid, w));
      if (run.size > 0) f.bytes.runs.push_back(run);
    }
    in->frozen.push_back(std::move(f));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Zero3Input> Zero3InputFromIndex(const CheckpointIndex& index) {
  UCP_RETURN_IF_ERROR(CheckTopology(index));
  Zero3Input in;
  in.origin = index.dir.tag_dir;
  for (const deepspeed::CheckpointFile& f : index.files) UCP_RETURN_IF_ERROR(AddFile(f.torch, &in));
  in.source_dp = index.topology.dp;
  in.source_ep = index.topology.ep;
  for (const deepspeed::FlatGroup& g : index.flat_groups) {
    in.sub_groups.push_back(Zero3SubGroup{g.expert, g.params});
  }
  for (const deepspeed::Parameter& p : index.params) {
    Zero3Param z;
    z.name = p.name;
    z.shape = p.shape;
    z.sub_group = p.flat_group;
    z.expert = p.is_expert();
    z.num_experts = p.is_expert() ? p.expert->num_experts : 0;
    for (StateKind s : deepspeed::kAllStates) {
      Zero3Runs& runs = z.states[static_cast<int>(s)];
      runs.dtype = s == StateKind::kFp32 ? index.kind.master_dtype : index.kind.state_dtype;
      for (const deepspeed::Fragment& f : p.slices[0].fragments) {
        if (f.numel == 0) continue;
        const deepspeed::TensorLocation& loc = f.state(s);
        runs.dtype = loc.dtype;
        runs.runs.push_back(store::ByteRun{loc.file, loc.file_offset, loc.num_bytes()});
      }
    }
    in.params.push_back(std::move(z));
  }
  for (const deepspeed::FrozenParam& fp : index.frozen_params) {
    Zero3Frozen f;
    f.name = fp.name;
    f.shape = fp.shape;
    std::vector<deepspeed::FrozenParam::Piece> pieces = fp.pieces;
    std::sort(pieces.begin(), pieces.end(), [](const auto& a, const auto& b) { return a.offset < b.offset; });
    for (const auto& piece : pieces) {
      f.bytes.dtype = piece.location.dtype;
      if (piece.location.numel > 0) {
        f.bytes.runs.push_back(store::ByteRun{piece.location.file, piece.location.file_offset,
                                              piece.location.num_bytes()});
      }
    }
    in.frozen.push_back(std::move(f));
  }
  in.model_root = &index.model_file(0, 0).root();
  in.optimizer_state_dict = &index.optimizer_state_dict();
  in.shared_params = in.model_root->Get(keys::kSharedParams);
  return in;
}

absl::StatusOr<Zero3Input> Zero3InputFromUcp(const std::string& ucp_dir) {
  namespace fs = std::filesystem;
  Zero3Input in;
  in.origin = ucp_dir;
  const fs::path dir(ucp_dir);
  std::error_code ec;
  if (!fs::exists(dir / ModelFileName(0), ec)) {
    if (fs::exists(dir / "mp_rank_00_model_states.pt", ec)) {
      return absl::FailedPreconditionError(absl::StrCat(ucp_dir, ": a ZeRO-1/2 UCP (mp_rank_00_model_states.pt); "
                                                        "the ZeRO-3 planner needs zero_pp_rank_* model files"));
    }
    return absl::NotFoundError(absl::StrCat(ucp_dir, ": no ", ModelFileName(0)));
  }
  if (fs::exists(dir / "zero_pp_rank_0_mp_rank_01_model_states.pt", ec)) {
    return absl::UnimplementedError(absl::StrCat(ucp_dir, ": ZeRO-3 UCP with tensor parallelism (mp_rank_01)"));
  }
  // The copied model files: one per source DP rank.
  std::vector<const Value*> roots;
  std::vector<std::string> paths;
  for (int d = 0; fs::exists(dir / ModelFileName(d), ec); ++d) {
    paths.push_back((dir / ModelFileName(d)).string());
    UCP_ASSIGN_OR_RETURN(std::shared_ptr<const TorchFile> f, OpenTorch(paths.back()));
    UCP_RETURN_IF_ERROR(AddFile(f, &in));
    UCP_ASSIGN_OR_RETURN(const Value* root, ids::AsDict(&f->root(), paths.back()));
    roots.push_back(root);
  }
  in.source_dp = static_cast<int>(roots.size());
  in.model_root = roots[0];
  in.shared_params = in.model_root->Get(keys::kSharedParams);
  const std::string opt_path = (dir / store::OptimizerStatePath()).string();
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<const TorchFile> opt, OpenTorch(opt_path));
  UCP_RETURN_IF_ERROR(AddFile(opt, &in));
  UCP_ASSIGN_OR_RETURN(in.optimizer_state_dict, ids::AsDict(&opt->root(), opt_path));
  UCP_ASSIGN_OR_RETURN(const Value* stage_v, ids::Require(*in.optimizer_state_dict, keys::kZeroStage, opt_path));
  UCP_ASSIGN_OR_RETURN(int stage, ids::AsZeroStage(stage_v, absl::StrCat(opt_path, ": ", keys::kZeroStage)));
  if (stage != 3) {
    return absl::FailedPreconditionError(absl::StrCat(opt_path, ": zero_stage ", stage, ", expected 3"));
  }
  using ExpertMap = absl::flat_hash_map<std::string, int>;
  UCP_ASSIGN_OR_RETURN(ExpertMap experts,
                       ExpertNames(*in.model_root, absl::StrCat(paths[0], ": ", keys::kDsAutoepLayers), &in.source_ep));

  const std::string shapes_what = absl::StrCat(paths[0], ": ", keys::kParamShapes);
  UCP_ASSIGN_OR_RETURN(const Value* shapes_v, ids::Require(*in.model_root, keys::kParamShapes, paths[0]));
  UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> groups, ids::AsSequence(shapes_v, shapes_what));
  absl::flat_hash_set<std::string> seen;
  for (size_t s = 0; s < groups.size(); ++s) {
    const std::string gwhat = absl::StrCat(shapes_what, "[", s, "]");
    UCP_ASSIGN_OR_RETURN(const Value* g, ids::AsDict(groups[s], gwhat));
    Zero3SubGroup sub;
    for (const auto& [k, v] : g->entries()) {
      Zero3Param p;
      UCP_ASSIGN_OR_RETURN(p.name, ids::AsStr(k, gwhat));
      UCP_RETURN_IF_ERROR(store::ValidateParamName(p.name));
      if (!seen.insert(p.name).second) return absl::DataLossError(absl::StrCat(gwhat, ": duplicate '", p.name, "'"));
      UCP_ASSIGN_OR_RETURN(p.shape, ids::AsShape(v, absl::StrCat(gwhat, "['", p.name, "']")));
      p.sub_group = static_cast<int>(s);
      auto e = experts.find(p.name);
      p.expert = e != experts.end();
      p.num_experts = p.expert ? e->second : 0;
      if (p.expert && (p.shape.rank() == 0 || p.shape.dim(0) * in.source_ep != p.num_experts)) {
        return absl::DataLossError(absl::StrCat(gwhat, "['", p.name, "']: shape ", p.shape.ToString(),
                                                " is not EP-local for ", p.num_experts, " experts, ep ",
                                                in.source_ep));
      }
      if (!sub.params.empty() && sub.expert != p.expert) {
        return absl::DataLossError(absl::StrCat(gwhat, ": mixes expert and dense parameters"));
      }
      sub.expert = p.expert;
      UCP_ASSIGN_OR_RETURN(int64_t numel, p.shape.NumElements());
      const int64_t merged = p.expert ? numel * in.source_ep : numel;
      for (StateKind st : deepspeed::kAllStates) {
        const std::string path = (dir / store::ParamStatePath(p.name, deepspeed::StateName(st))).string();
        if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": missing"));
        UCP_ASSIGN_OR_RETURN(std::shared_ptr<const TorchFile> f, OpenTorch(path));
        UCP_RETURN_IF_ERROR(AddFile(f, &in));
        const Value* tv = &f->root();
        if (tv->is_dict()) {
          UCP_ASSIGN_OR_RETURN(tv, ids::Require(*tv, store::kParamKey, path));
        }
        UCP_ASSIGN_OR_RETURN(const TensorRef* t, ids::AsTensor(tv, path));
        if (t->NumElements() != merged) {
          return absl::DataLossError(absl::StrCat(path, ": ", t->NumElements(), " elements, expected ", merged,
                                                  " for '", p.name, "'"));
        }
        Zero3Runs& runs = p.states[static_cast<int>(st)];
        runs.dtype = t->dtype;
        UCP_ASSIGN_OR_RETURN(store::ByteRun run, TensorRun(in, *t, merged, path));
        if (run.size > 0) runs.runs.push_back(run);
      }
      sub.params.push_back(static_cast<int>(in.params.size()));
      in.params.push_back(std::move(p));
    }
    in.sub_groups.push_back(std::move(sub));
  }
  UCP_RETURN_IF_ERROR(AddFrozenFromModelFiles(roots, paths, &in));
  return in;
}

}  // namespace ucp::converters::plan
