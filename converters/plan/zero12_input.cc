#include "converters/plan/zero12_input.h"

#include <filesystem>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "converters/deepspeed/deepspeed_keys.h"
#include "converters/deepspeed/expert_names.h"
#include "converters/deepspeed/value_access.h"
#include "formats/base/status.h"
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

// Adds `file` as source `files.size()` and locates its storages.
absl::Status AddFile(std::shared_ptr<const TorchFile> file, Zero12Input* in) {
  const int fi = static_cast<int>(in->files.size());
  for (const StorageRef* s : file->storages()) {
    const std::string record = absl::StrCat(file->archive_root(), "/data/", s->key);
    const formats::zip::ZipEntry* entry = file->zip().Find(record);
    if (entry == nullptr) return absl::DataLossError(absl::StrCat(file->name(), ": no record ", record));
    in->storage_runs[s] = store::ByteRun{fi, entry->data_offset, entry->size};
  }
  in->files.push_back(std::move(file));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const TorchFile>> Open(const std::string& path, Zero12Input* in) {
  UCP_ASSIGN_OR_RETURN(TorchFile f, TorchFile::OpenPath(path));
  auto shared = std::make_shared<const TorchFile>(std::move(f));
  UCP_RETURN_IF_ERROR(AddFile(shared, in));
  return shared;
}

// The first `numel` elements of a contiguous tensor as one run, checked against its record.
absl::StatusOr<store::ByteRun> TensorRun(const Zero12Input& in, const TensorRef& t, int64_t numel,
                                         absl::string_view what) {
  if (!t.IsContiguous() || numel < 0 || numel > t.NumElements()) {
    return absl::DataLossError(absl::StrCat(what, ": expected a contiguous tensor of ", numel,
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

// name → num_experts of every AutoEP fused expert weight; sets *ep to the layers' ep_size.
absl::StatusOr<absl::flat_hash_map<std::string, int>> ExpertNames(const Value& root, absl::string_view what,
                                                                  int* ep) {
  absl::flat_hash_map<std::string, int> out;
  const Value* v = root.Get(keys::kDsAutoepLayers);
  if (v == nullptr || v->is_none()) return out;
  UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> layers, ids::AsSequence(v, what));
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

// Native MoE (§2.5): num_experts per MoE layer in a model file without ds_autoep_layers.
absl::Status NativeMoeNumExperts(const Value& root, const std::string& model_path, Zero12Input* in) {
  const Value* v = root.Get(keys::kNumExperts);
  const Value* autoep = root.Get(keys::kDsAutoepLayers);
  if (v == nullptr || v->is_none() || (autoep != nullptr && !autoep->is_none())) return absl::OkStatus();
  const std::string what = absl::StrCat(model_path, ": ", keys::kNumExperts);
  if (!v->is(formats::torch::ValueKind::kList)) {
    return absl::UnimplementedError(absl::StrCat(what, ": not a list (legacy single-layer MoE checkpoint)"));
  }
  for (const Value* n : v->items()) {
    UCP_ASSIGN_OR_RETURN(int64_t e, ids::AsIntIn(n, 1, 1 << 20, what));
    in->native_moe_num_experts.push_back(static_cast<int>(e));
  }
  return absl::OkStatus();
}

// A native MoE expert parameter's fp32.pt (opened as a source), checking its ep_num_experts (the
// EP ranks it stacks) against the other experts' (*seen_ep, 0: none yet); sets in->source_ep.
absl::StatusOr<std::shared_ptr<const TorchFile>> NativeExpertFp32(const std::filesystem::path& dir,
                                                                   const std::string& name, Zero12Input* in,
                                                                   int* seen_ep) {
  const std::string path = (dir / store::ParamStatePath(name, deepspeed::StateName(StateKind::kFp32))).string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": missing"));
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<const TorchFile> f, Open(path, in));
  UCP_ASSIGN_OR_RETURN(const Value* d, ids::AsDict(&f->root(), path));
  const Value* is_expert = d->Get(store::kIsExpertParamKey);
  const Value* rows = d->Get(store::kEpNumExpertsKey);
  if (is_expert == nullptr || !is_expert->is(formats::torch::ValueKind::kBool) || !is_expert->bool_value() ||
      rows == nullptr) {
    return absl::DataLossError(absl::StrCat(path, ": a native MoE expert parameter without '",
                                            store::kIsExpertParamKey, "': True and '", store::kEpNumExpertsKey, "'"));
  }
  UCP_ASSIGN_OR_RETURN(int64_t ep, ids::AsIntIn(rows, 1, 1 << 20, absl::StrCat(path, ": ", store::kEpNumExpertsKey)));
  if (*seen_ep != 0 && *seen_ep != ep) {
    return absl::DataLossError(absl::StrCat(path, ": ", store::kEpNumExpertsKey, " ", ep, ", other experts have ",
                                            *seen_ep));
  }
  *seen_ep = static_cast<int>(ep);
  in->source_ep = *seen_ep;
  return f;
}

}  // namespace

absl::StatusOr<Zero12Input> Zero12InputFromIndex(const CheckpointIndex& index) {
  const deepspeed::Topology& t = index.topology;
  if (t.zero_stage != 0 && t.zero_stage != 1 && t.zero_stage != 2) {
    return absl::FailedPreconditionError(absl::StrCat(index.dir.tag_dir, ": ZeRO-", t.zero_stage,
                                                      " checkpoint; the ZeRO-1/2 planner reads stages 0, 1 and 2"));
  }
  if (t.tp_size != 1 || t.pp_size != 1) {
    return absl::UnimplementedError(absl::StrCat(index.dir.tag_dir, ": tp=", t.tp_size, ", pp=", t.pp_size,
                                                 " (only tp = pp = 1 is resharded)"));
  }
  Zero12Input in;
  in.origin = index.dir.tag_dir;
  for (const deepspeed::CheckpointFile& f : index.files) UCP_RETURN_IF_ERROR(AddFile(f.torch, &in));
  in.source_dp = t.dp_size;
  in.source_ep = t.ep_size;
  in.zero_stage = t.zero_stage;
  in.bf16_optimizer = t.wrapper == deepspeed::OptimizerWrapper::kBf16Optimizer;
  in.frozen_params = static_cast<int>(index.frozen_params.size());
  for (const deepspeed::FlatGroup& g : index.flat_groups) {
    Zero12Group group;
    group.expert = g.expert;
    group.params = g.params;
    group.step = g.step();
    if (g.param_group < 0 || g.param_group >= static_cast<int>(index.param_groups.size())) {
      return absl::DataLossError(absl::StrCat(in.origin, ": flat group ", g.index, " has no param group"));
    }
    group.hyperparameters = index.param_groups[g.param_group].hyperparameters;
    in.groups.push_back(std::move(group));
  }
  for (const deepspeed::Parameter& p : index.params) {
    Zero12Param z;
    z.name = p.name;
    z.shape = p.shape;
    z.group = p.flat_group;
    z.expert = p.is_expert();
    z.num_experts = p.is_expert() ? p.expert->num_experts : 0;
    for (StateKind s : deepspeed::kAllStates) {
      Zero3Runs& runs = z.states[static_cast<int>(s)];
      runs.dtype = s == StateKind::kFp32 ? t.master_dtype : t.state_dtype;
      for (const deepspeed::Fragment& f : p.slices[0].fragments) {
        if (f.numel == 0) continue;
        const deepspeed::TensorLocation& loc = f.state(s);
        runs.dtype = loc.dtype;
        runs.runs.push_back(store::ByteRun{loc.file, loc.file_offset, loc.num_bytes()});
      }
    }
    in.params.push_back(std::move(z));
  }
  in.model_root = &index.model_file(0, 0).root();
  in.optimizer_template = &index.optimizer_state_dict();
  in.native_moe_num_experts = index.native_moe_num_experts;
  if (t.zero_stage == 0) in.zero0_shared_params = index.shared_params;
  if (!in.native_moe_num_experts.empty()) {
    for (int fi : index.expert_files) {
      if (index.files[fi].name.mp_rank == 0) in.native_expert_files.emplace_back(index.files[fi].basename, fi);
    }
  }
  return in;
}

absl::StatusOr<Zero12Input> Zero12InputFromUcp(const std::string& ucp_dir) {
  namespace fs = std::filesystem;
  Zero12Input in;
  in.origin = ucp_dir;
  const fs::path dir(ucp_dir);
  std::error_code ec;
  const std::string model_path = (dir / "mp_rank_00_model_states.pt").string();
  if (!fs::exists(model_path, ec)) {
    if (fs::exists(dir / "zero_pp_rank_0_mp_rank_00_model_states.pt", ec)) {
      return absl::FailedPreconditionError(absl::StrCat(ucp_dir, ": a ZeRO-3 UCP; the ZeRO-1/2 planner needs "
                                                        "mp_rank_00_model_states.pt"));
    }
    return absl::NotFoundError(absl::StrCat(model_path, ": missing"));
  }
  if (fs::exists(dir / "mp_rank_01_model_states.pt", ec)) {
    return absl::UnimplementedError(absl::StrCat(ucp_dir, ": UCP with tensor/pipeline parallelism (mp_rank_01)"));
  }
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<const TorchFile> model, Open(model_path, &in));
  UCP_ASSIGN_OR_RETURN(in.model_root, ids::AsDict(&model->root(), model_path));
  const std::string opt_path = (dir / store::OptimizerStatePath()).string();
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<const TorchFile> opt, Open(opt_path, &in));
  UCP_ASSIGN_OR_RETURN(in.optimizer_template, ids::AsDict(&opt->root(), opt_path));
  if (const Value* sv = in.optimizer_template->Get(keys::kZeroStage); sv != nullptr) {
    UCP_ASSIGN_OR_RETURN(in.zero_stage, ids::AsZeroStage(sv, absl::StrCat(opt_path, ": ", keys::kZeroStage)));
    if (in.zero_stage != 1 && in.zero_stage != 2) {
      return absl::FailedPreconditionError(absl::StrCat(opt_path, ": zero_stage ", in.zero_stage, ", expected 1 or 2"));
    }
  } else {
    in.bf16_optimizer = true;  // BF16_Optimizer writes no zero_stage (§3.6)
  }
  if (const Value* frozen = in.model_root->Get(keys::kFrozenParamShapes);
      frozen != nullptr && frozen->is_dict()) {
    in.frozen_params = static_cast<int>(frozen->entries().size());
  }
  if (const Value* dp = in.model_root->Get(keys::kDpWorldSize); dp != nullptr) {
    UCP_ASSIGN_OR_RETURN(int64_t v, ids::AsIntIn(dp, 1, 1 << 24, absl::StrCat(model_path, ": dp_world_size")));
    in.source_dp = static_cast<int>(v);
  }
  using ExpertMap = absl::flat_hash_map<std::string, int>;
  const std::string layers_what = absl::StrCat(model_path, ": ", keys::kDsAutoepLayers);
  UCP_ASSIGN_OR_RETURN(ExpertMap experts, ExpertNames(*in.model_root, layers_what, &in.source_ep));
  UCP_RETURN_IF_ERROR(NativeMoeNumExperts(*in.model_root, model_path, &in));
  UCP_ASSIGN_OR_RETURN(const Value* pgs_v, ids::Require(*in.optimizer_template, keys::kParamGroups, opt_path));
  UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> pgs, ids::AsSequence(pgs_v, opt_path));

  const std::string shapes_what = absl::StrCat(model_path, ": ", keys::kParamShapes);
  UCP_ASSIGN_OR_RETURN(const Value* shapes_v, ids::Require(*in.model_root, keys::kParamShapes, model_path));
  if (shapes_v->is_none()) {
    return absl::FailedPreconditionError(absl::StrCat(
        model_path, ": param_shapes is None: a UCP converted from a ZeRO-0 checkpoint, which does not say which "
                    "parameter is in which optimizer group; reshard the ZeRO-0 folder itself"));
  }
  UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> groups, ids::AsSequence(shapes_v, shapes_what));
  if (groups.size() != pgs.size()) {
    return absl::DataLossError(absl::StrCat(shapes_what, ": ", groups.size(), " groups, ", opt_path, " has ",
                                            pgs.size(), " param_groups"));
  }
  absl::flat_hash_set<std::string> seen;
  int native_ep = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const std::string gwhat = absl::StrCat(shapes_what, "[", g, "]");
    UCP_ASSIGN_OR_RETURN(const Value* gd, ids::AsDict(groups[g], gwhat));
    Zero12Group group;
    group.hyperparameters = pgs[g];
    for (const auto& [k, v] : gd->entries()) {
      Zero12Param p;
      UCP_ASSIGN_OR_RETURN(p.name, ids::AsStr(k, gwhat));
      UCP_RETURN_IF_ERROR(store::ValidateParamName(p.name));
      if (!seen.insert(p.name).second) return absl::DataLossError(absl::StrCat(gwhat, ": duplicate '", p.name, "'"));
      UCP_ASSIGN_OR_RETURN(p.shape, ids::AsShape(v, absl::StrCat(gwhat, "['", p.name, "']")));
      p.group = static_cast<int>(g);
      auto e = experts.find(p.name);
      p.expert = e != experts.end();
      p.num_experts = p.expert ? e->second : 0;
      // Native MoE: the fp32 file says how many EP ranks' rows it stacks (its ep_num_experts).
      std::shared_ptr<const TorchFile> native_fp32;
      const bool native =
          !in.native_moe_num_experts.empty() && deepspeed::HasNativeExpertInfix(p.name);
      if (native) {
        UCP_ASSIGN_OR_RETURN(native_fp32, NativeExpertFp32(dir, p.name, &in, &native_ep));
        p.expert = true;
        p.num_experts = in.source_ep;
      }
      if (p.expert && !native && (p.shape.rank() == 0 || p.shape.dim(0) * in.source_ep != p.num_experts)) {
        return absl::DataLossError(absl::StrCat(gwhat, "['", p.name, "']: shape ", p.shape.ToString(),
                                                " is not EP-local for ", p.num_experts, " experts, ep ", in.source_ep));
      }
      if (!group.params.empty() && group.expert != p.expert) {
        return absl::DataLossError(absl::StrCat(gwhat, ": mixes expert and dense parameters"));
      }
      group.expert = p.expert;
      UCP_ASSIGN_OR_RETURN(int64_t numel, p.shape.NumElements());
      const int64_t merged = p.expert ? numel * in.source_ep : numel;
      for (StateKind st : deepspeed::kAllStates) {
        const std::string path = (dir / store::ParamStatePath(p.name, deepspeed::StateName(st))).string();
        if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": missing"));
        std::shared_ptr<const TorchFile> f = st == StateKind::kFp32 ? native_fp32 : nullptr;
        if (f == nullptr) {
          UCP_ASSIGN_OR_RETURN(f, Open(path, &in));
        }
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
      if (group.params.empty()) {  // step: equal for every param of a group (§6.4); take the first
        const std::string step_path = (dir / store::ParamStatePath(p.name, "step")).string();
        if (fs::exists(step_path, ec)) {
          UCP_ASSIGN_OR_RETURN(std::shared_ptr<const TorchFile> f, Open(step_path, &in));
          group.step = &f->root();
        }
      }
      group.params.push_back(static_cast<int>(in.params.size()));
      in.params.push_back(std::move(p));
    }
    in.groups.push_back(std::move(group));
  }
  return in;
}

}  // namespace ucp::converters::plan
