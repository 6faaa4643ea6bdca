// ZeroSinkInputFromUcp: a UCP folder as the ZeRO sink's input (§5). Both kinds of UCP share one
// reading of param_shapes and the per-parameter state files; they differ in the model-states files
// ds_to_universal copies: ZeRO-1/2 keeps mp_rank_00_model_states.pt (dp from its dp_world_size;
// native MoE expert parameters say how many EP ranks they stack), ZeRO-3 every rank's
// zero_pp_rank_<d>_mp_rank_00_model_states.pt (dp = their count; frozen parameters are the ranks'
// frozen_param_fragments put back together).
#include <filesystem>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "converters/sinks/zero/zero_sink_input.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/expert_names.h"
#include "formats/deepspeed/file_names.h"
#include "formats/deepspeed/value_access.h"
#include "ucp/shard_layout.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::sinks {
namespace {

namespace fs = std::filesystem;
namespace keys = formats::deepspeed::keys;
namespace ids = formats::deepspeed;
using deepspeed::StateKind;
using formats::torch::TensorRef;
using formats::torch::TorchFile;
using formats::torch::ValueKind;
using internal_sink::AddTorchFile;
using internal_sink::TensorRun;

std::string Zero3ModelFile(int dp) { return formats::deepspeed::ZeroModelStatesFileName(dp, 0); }

absl::StatusOr<std::shared_ptr<const TorchFile>> Open(const std::string& path, ZeroSinkInput* in) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": missing"));
  UCP_ASSIGN_OR_RETURN(TorchFile f, TorchFile::OpenPath(path));
  auto shared = std::make_shared<const TorchFile>(std::move(f));
  UCP_RETURN_IF_ERROR(AddTorchFile(shared, in).status());
  return shared;
}

// Native MoE (§2.5): num_experts per MoE layer in a model file without ds_autoep_layers.
absl::Status NativeMoeNumExperts(const Value& root, const std::string& model_path,
                                 ZeroSinkInput* in) {
  const Value* v = root.Get(keys::kNumExperts);
  const Value* autoep = root.Get(keys::kDsAutoepLayers);
  if (v == nullptr || v->is_none() || (autoep != nullptr && !autoep->is_none()))
    return absl::OkStatus();
  const std::string what = absl::StrCat(model_path, ": ", keys::kNumExperts);
  if (!v->is(ValueKind::kList)) {
    return absl::UnimplementedError(
        absl::StrCat(what, ": not a list (legacy single-layer MoE checkpoint)"));
  }
  for (const Value* n : v->items()) {
    UCP_ASSIGN_OR_RETURN(int64_t e, ids::AsIntIn(n, 1, 1 << 20, what));
    in->native_moe_num_experts.push_back(static_cast<int>(e));
  }
  return absl::OkStatus();
}

// A native MoE expert parameter's fp32 state file says how many EP ranks' rows it stacks
// (ep_num_experts); all of them must agree. Sets in->topology.ep.
absl::Status NativeExpertRows(const TorchFile& fp32, const std::string& path, int* seen_ep,
                              ZeroSinkInput* in) {
  UCP_ASSIGN_OR_RETURN(const Value* d, ids::AsDict(&fp32.root(), path));
  const Value* is_expert = d->Get(ucp::kIsExpertParamKey);
  const Value* rows = d->Get(ucp::kEpNumExpertsKey);
  if (is_expert == nullptr || !is_expert->is(ValueKind::kBool) || !is_expert->bool_value() ||
      rows == nullptr) {
    return absl::DataLossError(absl::StrCat(path, ": a native MoE expert parameter without '",
                                            ucp::kIsExpertParamKey, "': True and '",
                                            ucp::kEpNumExpertsKey, "'"));
  }
  UCP_ASSIGN_OR_RETURN(
      int64_t ep, ids::AsIntIn(rows, 1, 1 << 20, absl::StrCat(path, ": ", ucp::kEpNumExpertsKey)));
  if (*seen_ep != 0 && *seen_ep != ep) {
    return absl::DataLossError(absl::StrCat(path, ": ", ucp::kEpNumExpertsKey, " ", ep,
                                            ", other experts have ", *seen_ep));
  }
  *seen_ep = static_cast<int>(ep);
  in->topology.ep = *seen_ep;
  return absl::OkStatus();
}

// zero/<name>/{fp32,exp_avg,exp_avg_sq}.pt (a raw tensor, or DeepSpeed's dict with 'param') of a
// parameter whose merged tensor has `merged` elements.
absl::Status ReadStates(const fs::path& dir, int64_t merged, int* native_ep, SinkParam* p,
                        ZeroSinkInput* in) {
  for (StateKind st : deepspeed::kAllStates) {
    const std::string path =
        (dir / ucp::ParamStatePath(p->name, deepspeed::StateName(st))).string();
    UCP_ASSIGN_OR_RETURN(std::shared_ptr<const TorchFile> f, Open(path, in));
    if (native_ep != nullptr && st == StateKind::kFp32) {
      UCP_RETURN_IF_ERROR(NativeExpertRows(*f, path, native_ep, in));
      p->num_experts = in->topology.ep;
      merged *= in->topology.ep;
    }
    const Value* tv = &f->root();
    if (tv->is_dict()) {
      UCP_ASSIGN_OR_RETURN(tv, ids::Require(*tv, ucp::kParamKey, path));
    }
    UCP_ASSIGN_OR_RETURN(const TensorRef* t, ids::AsTensor(tv, path));
    if (t->NumElements() != merged) {
      return absl::DataLossError(absl::StrCat(path, ": ", t->NumElements(), " elements, expected ",
                                              merged, " for '", p->name, "'"));
    }
    TensorRuns& runs = p->states[static_cast<int>(st)];
    runs.dtype = t->dtype;
    UCP_ASSIGN_OR_RETURN(ucp::ByteRun run, TensorRun(*in, *t, merged, path));
    if (run.size > 0) runs.runs.push_back(run);
  }
  return absl::OkStatus();
}

// The groups of param_shapes (ZeRO-1/2: torch param groups; ZeRO-3: sub-groups) and every
// parameter's states. ZeRO-1/2 also the groups' hyper-parameters (optimizer_state.pt's
// param_groups) and steps (the first parameter's step.pt: equal within a group, §6.4).
absl::Status ReadParams(const fs::path& dir, const std::string& model_path,
                        const absl::flat_hash_map<std::string, Shape>* merged_shapes,
                        ZeroSinkInput* in) {
  const bool zero3 = in->zero_stage == 3;
  const std::string layers_what = absl::StrCat(model_path, ": ", keys::kDsAutoepLayers);
  int autoep = in->topology.ep;
  UCP_ASSIGN_OR_RETURN(auto experts,
                       internal_sink::AutoEpExperts(*in->model_root, layers_what, &autoep));
  in->topology.ep = autoep;
  absl::Span<const Value* const> pgs;
  if (!zero3) {
    UCP_ASSIGN_OR_RETURN(const Value* pgs_v,
                         ids::Require(*in->optimizer_template, keys::kParamGroups, "optimizer"));
    UCP_ASSIGN_OR_RETURN(
        pgs, ids::AsSequence(pgs_v, absl::StrCat(in->origin, ": optimizer param_groups")));
  }
  const std::string shapes_what = absl::StrCat(model_path, ": ", keys::kParamShapes);
  UCP_ASSIGN_OR_RETURN(const Value* shapes_v,
                       ids::Require(*in->model_root, keys::kParamShapes, model_path));
  if (shapes_v->is_none()) {
    return absl::FailedPreconditionError(
        absl::StrCat(model_path,
                     ": param_shapes is None: a UCP converted from a ZeRO-0 checkpoint, which does "
                     "not say which "
                     "parameter is in which optimizer group; reshard the ZeRO-0 folder itself"));
  }
  UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> groups,
                       ids::AsSequence(shapes_v, shapes_what));
  if (!zero3 && groups.size() != pgs.size()) {
    return absl::DataLossError(absl::StrCat(shapes_what, ": ", groups.size(),
                                            " groups, the optimizer has ", pgs.size(),
                                            " param_groups"));
  }
  absl::flat_hash_set<std::string> seen;
  int native_ep = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const std::string gwhat = absl::StrCat(shapes_what, "[", g, "]");
    UCP_ASSIGN_OR_RETURN(const Value* gd, ids::AsDict(groups[g], gwhat));
    SinkGroup group;
    if (!zero3) group.hyperparameters = pgs[g];
    for (const auto& [k, v] : gd->entries()) {
      SinkParam p;
      UCP_ASSIGN_OR_RETURN(p.name, ids::AsStr(k, gwhat));
      UCP_RETURN_IF_ERROR(ucp::ValidateParamName(p.name));
      if (!seen.insert(p.name).second)
        return absl::DataLossError(absl::StrCat(gwhat, ": duplicate '", p.name, "'"));
      UCP_ASSIGN_OR_RETURN(p.shape, ids::AsShape(v, absl::StrCat(gwhat, "['", p.name, "']")));
      if (merged_shapes != nullptr) p.shape = merged_shapes->at(p.name);  // TP: the whole tensor
      p.group = static_cast<int>(g);
      auto e = experts.find(p.name);
      p.expert = e != experts.end();
      p.num_experts = p.expert ? e->second : 0;
      const bool native =
          !in->native_moe_num_experts.empty() && formats::deepspeed::HasNativeExpertInfix(p.name);
      if (p.expert && (p.shape.rank() == 0 || p.shape.dim(0) * in->topology.ep != p.num_experts)) {
        return absl::DataLossError(absl::StrCat(gwhat, "['", p.name, "']: shape ",
                                                p.shape.ToString(), " is not EP-local for ",
                                                p.num_experts, " experts, ep ", in->topology.ep));
      }
      p.expert = p.expert || native;
      if (!group.params.empty() && group.expert != p.expert) {
        return absl::DataLossError(absl::StrCat(gwhat, ": mixes expert and dense parameters"));
      }
      group.expert = p.expert;
      UCP_ASSIGN_OR_RETURN(int64_t numel, p.shape.NumElements());
      const int64_t merged = p.expert && !native ? numel * in->topology.ep : numel;
      UCP_RETURN_IF_ERROR(ReadStates(dir, merged, native ? &native_ep : nullptr, &p, in));
      if (!zero3 && group.params.empty()) {
        const std::string step_path = (dir / ucp::ParamStatePath(p.name, "step")).string();
        std::error_code ec;
        if (fs::exists(step_path, ec)) {
          UCP_ASSIGN_OR_RETURN(std::shared_ptr<const TorchFile> f, Open(step_path, in));
          group.step = &f->root();
        }
      }
      group.params.push_back(static_cast<int>(in->params.size()));
      in->params.push_back(std::move(p));
    }
    in->groups.push_back(std::move(group));
  }
  return absl::OkStatus();
}

// ZeRO-3: the frozen parameters put back together from the ranks' padded partitions (§4.3).
absl::Status ReadZero3Frozen(const std::vector<const Value*>& roots,
                             const std::vector<std::string>& paths, ZeroSinkInput* in) {
  const Value* shapes = roots[0]->Get(keys::kFrozenParamShapes);
  if (shapes == nullptr || shapes->is_none()) return absl::OkStatus();
  const std::string what = absl::StrCat(paths[0], ": ", keys::kFrozenParamShapes);
  UCP_ASSIGN_OR_RETURN(const Value* dict, ids::AsDict(shapes, what));
  const int world = static_cast<int>(roots.size());
  for (const auto& [k, v] : dict->entries()) {
    SinkFrozen f;
    UCP_ASSIGN_OR_RETURN(f.name, ids::AsStr(k, what));
    UCP_ASSIGN_OR_RETURN(f.shape, ids::AsShape(v, absl::StrCat(what, "['", f.name, "']")));
    UCP_ASSIGN_OR_RETURN(const int64_t numel, f.shape.NumElements());
    for (int r = 0; r < world; ++r) {
      const ucp::PerParamPiece piece = ucp::PerParamShard(numel, world, r);
      const std::string w =
          absl::StrCat(paths[r], ": ", keys::kFrozenParamFragments, "['", f.name, "']");
      UCP_ASSIGN_OR_RETURN(const Value* frags,
                           ids::Require(*roots[r], keys::kFrozenParamFragments, paths[r]));
      UCP_ASSIGN_OR_RETURN(const Value* fd, ids::AsDict(frags, w));
      UCP_ASSIGN_OR_RETURN(const Value* tv, ids::Require(*fd, f.name, w));
      UCP_ASSIGN_OR_RETURN(const TensorRef* t, ids::AsTensor(tv, w, /*flat=*/true));
      if (t->NumElements() != piece.partition) {
        return absl::DataLossError(
            absl::StrCat(w, ": ", t->NumElements(), " elements, expected ", piece.partition));
      }
      f.bytes.dtype = t->dtype;
      UCP_ASSIGN_OR_RETURN(ucp::ByteRun run, TensorRun(*in, *t, piece.valid, w));
      if (run.size > 0) f.bytes.runs.push_back(run);
    }
    in->frozen.push_back(std::move(f));
  }
  return absl::OkStatus();
}

// The model-states files ds_to_universal copied: sets model_root and topology.dp; ZeRO-3 also the
// frozen parameters. Returns the first file's path.
// The model-states files ds_to_universal copied: sets model_root and topology.dp; ZeRO-1/2 also
// every TP rank's mp_rank_XX root (in `mp_roots`, `mp_paths`); ZeRO-3 the frozen parameters.
// Returns the first file's path.
absl::StatusOr<std::string> ReadModelFiles(const fs::path& dir, ZeroSinkInput* in,
                                           std::vector<const Value*>* mp_roots,
                                           std::vector<std::string>* mp_paths) {
  std::error_code ec;
  const bool zero3 = fs::exists(dir / Zero3ModelFile(0), ec);
  if (!zero3) {
    for (int t = 0; fs::exists(dir / formats::deepspeed::ModelStatesFileName(t), ec); ++t) {
      mp_paths->push_back((dir / formats::deepspeed::ModelStatesFileName(t)).string());
      UCP_ASSIGN_OR_RETURN(std::shared_ptr<const TorchFile> model, Open(mp_paths->back(), in));
      UCP_ASSIGN_OR_RETURN(const Value* root, ids::AsDict(&model->root(), mp_paths->back()));
      mp_roots->push_back(root);
    }
    if (mp_roots->empty())
      return absl::NotFoundError(
          absl::StrCat((dir / formats::deepspeed::ModelStatesFileName(0)).string(), ": missing"));
    in->model_root = (*mp_roots)[0];
    in->topology.tp = static_cast<int>(mp_roots->size());
    if (const Value* dp = in->model_root->Get(keys::kDpWorldSize); dp != nullptr) {
      UCP_ASSIGN_OR_RETURN(
          int64_t v, ids::AsIntIn(dp, 1, 1 << 24, absl::StrCat((*mp_paths)[0], ": dp_world_size")));
      in->topology.dp = static_cast<int>(v);
    }
    UCP_RETURN_IF_ERROR(NativeMoeNumExperts(*in->model_root, (*mp_paths)[0], in));
    return (*mp_paths)[0];
  }
  if (fs::exists(dir / "zero_pp_rank_0_mp_rank_01_model_states.pt", ec)) {
    return absl::UnimplementedError(
        absl::StrCat(in->origin, ": ZeRO-3 UCP with tensor parallelism (mp_rank_01)"));
  }
  std::vector<const Value*> roots;
  std::vector<std::string> paths;
  for (int d = 0; fs::exists(dir / Zero3ModelFile(d), ec); ++d) {
    paths.push_back((dir / Zero3ModelFile(d)).string());
    UCP_ASSIGN_OR_RETURN(std::shared_ptr<const TorchFile> f, Open(paths.back(), in));
    UCP_ASSIGN_OR_RETURN(const Value* root, ids::AsDict(&f->root(), paths.back()));
    roots.push_back(root);
  }
  in->topology.dp = static_cast<int>(roots.size());
  in->model_root = roots[0];
  UCP_RETURN_IF_ERROR(ReadZero3Frozen(roots, paths, in));
  return paths[0];
}

}  // namespace

absl::StatusOr<std::vector<ZeroSinkInput>> ZeroSinkInputsFromUcp(const std::string& ucp_dir,
                                                                 int tp) {
  ZeroSinkInput in;
  in.kind = SinkInputKind::kUcpFolder;
  in.origin = ucp_dir;
  const fs::path dir(ucp_dir);
  std::error_code ec;
  if (!fs::exists(dir / formats::deepspeed::ModelStatesFileName(0), ec) &&
      !fs::exists(dir / Zero3ModelFile(0), ec)) {
    return absl::NotFoundError(absl::StrCat(ucp_dir, ": no ",
                                            formats::deepspeed::ModelStatesFileName(0),
                                            " (ZeRO-1/2) or ", Zero3ModelFile(0), " (ZeRO-3)"));
  }
  std::vector<const Value*> mp_roots;
  std::vector<std::string> mp_paths;
  UCP_ASSIGN_OR_RETURN(std::string model_path, ReadModelFiles(dir, &in, &mp_roots, &mp_paths));
  const std::string opt_path = (dir / ucp::OptimizerStatePath()).string();
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<const TorchFile> opt, Open(opt_path, &in));
  UCP_ASSIGN_OR_RETURN(in.optimizer_template, ids::AsDict(&opt->root(), opt_path));
  const bool zero3_files = fs::exists(dir / Zero3ModelFile(0), ec);
  if (const Value* sv = in.optimizer_template->Get(keys::kZeroStage); sv != nullptr) {
    UCP_ASSIGN_OR_RETURN(in.zero_stage,
                         ids::AsZeroStage(sv, absl::StrCat(opt_path, ": ", keys::kZeroStage)));
  } else {
    in.zero_stage = 1;
    in.bf16_optimizer = true;  // BF16_Optimizer writes no zero_stage (§3.6)
  }
  if (in.zero_stage == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        opt_path,
        ": a UCP converted from a ZeRO-0 checkpoint, which does not say which parameter is in "
        "which optimizer group; reshard the ZeRO-0 folder itself"));
  }
  if ((in.zero_stage == 3) != zero3_files) {
    return absl::FailedPreconditionError(
        absl::StrCat(opt_path, ": zero_stage ", in.zero_stage, ", but the folder has ",
                     zero3_files ? "ZeRO-3" : "ZeRO-1/2", " model-states files"));
  }
  if (in.topology.tp == 1) {
    UCP_RETURN_IF_ERROR(ReadParams(dir, model_path, nullptr, &in));
    std::vector<ZeroSinkInput> out;
    out.push_back(std::move(in));
    return out;
  }
  UCP_ASSIGN_OR_RETURN(internal_sink::TpCuts cuts, internal_sink::TpCutsOf(mp_roots, mp_paths));
  UCP_RETURN_IF_ERROR(ReadParams(dir, model_path, &cuts.merged_shapes, &in));
  if (tp == 1) {
    UCP_ASSIGN_OR_RETURN(ZeroSinkInput merged,
                         internal_sink::MergeTpRanks(std::move(in), mp_roots, mp_paths));
    std::vector<ZeroSinkInput> out;
    out.push_back(std::move(merged));
    return out;
  }
  if (tp > 0 && tp != in.topology.tp) {
    return absl::UnimplementedError(absl::StrCat(ucp_dir, ": tp ", in.topology.tp, " -> ", tp,
                                                 ": only the same tp or tp 1 is written"));
  }
  return internal_sink::SplitTpRanks(in, mp_roots, cuts);
}

absl::StatusOr<ZeroSinkInput> ZeroSinkInputFromUcp(const std::string& ucp_dir) {
  UCP_ASSIGN_OR_RETURN(std::vector<ZeroSinkInput> inputs, ZeroSinkInputsFromUcp(ucp_dir, 0));
  if (inputs.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        ucp_dir, ": tp=", inputs.size(), ": one input per TP rank (ZeroSinkInputsFromUcp)"));
  }
  return std::move(inputs[0]);
}

}  // namespace ucp::converters::sinks
