// IndexZero0: a checkpoint trained without ZeRO (stage 0, deepspeed-formats.md §1.3, §2.1, §2.4).
// There are no optimizer shards: the whole torch optimizer state_dict sits in the model-states file
// under `optimizer`, keyed by parameter *index* (the order the params were handed to the
// optimizer), and `param_shapes` is None. The names come from the module state dict:
//   * candidates = `module` entries in order, minus `buffer_names`, minus tied aliases (an entry
//     viewing the same storage, offset and shape as an earlier one; recorded in shared_params);
//   * every optimizer param has a state entry whose exp_avg shape is the param's shape;
//   * the params of each shape are matched, in order, to the candidates of that shape. This is
//     unambiguous only when, for each shape, the candidates and the optimizer's params are equally
//     many and all in one param group; anything else is refused (Unimplemented, naming the shape),
//     because nothing in the file says which of several same-shaped tensors the optimizer holds.
//     Within each group the names must then follow module order, as every grouping that filters
//     named_parameters() produces (checked).
// Candidates left over are frozen parameters. Each parameter is one fragment: fp32 = the module
// tensor (fp32 runs: module weights are the master weights), exp_avg / exp_avg_sq = the state.
// bf16 runs wrap the optimizer in FP16_UnfusedOptimizer: the torch state is `optimizer.
// optimizer_state_dict` and the fp32 master weights are `optimizer.fp32_groups[g][j]` (the module
// holds bf16 copies). FP16_Optimizer's flat `fp32_groups_flat` is refused (no fixture).
// AutoEP (§1.8): the module lacks the fused expert weights <prefix>.w1/w2/w3 (candidates of their
// EP-local shape [E_local, ...] are added after the module's, per layer in ds_autoep_layers order)
// and its `<path>.gate.gate.weight` router alias is no parameter; the model file's optimizer is
// EP rank 0's, expp_rank_<e> holds EP rank e's (dense states equal). An expert's fragment is one
// local expert's row: the master from layer_<L>_expert_<gid> (fp32) or the expp file's
// fp32_groups (bf16), exp_avg / exp_avg_sq rows of the expp file's state.
#include <algorithm>
#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "converters/deepspeed/index_builder.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"

namespace ucp::converters::deepspeed::internal_ds {
using formats::torch::TensorRef;
using formats::torch::Value;
using formats::torch::ValueKind;
namespace keys = formats::deepspeed::keys;
using formats::deepspeed::AsDict;
using formats::deepspeed::AsIntList;
using formats::deepspeed::AsSequence;
using formats::deepspeed::AsStr;
using formats::deepspeed::AsStrList;
using formats::deepspeed::AsTensor;
using formats::deepspeed::GetByInt;
using formats::deepspeed::Require;
namespace {

struct Candidate {
  std::string name;
  const TensorRef* tensor = nullptr;  // nullptr: an AutoEP expert weight (not in the module)
  int assigned = -1;                  // index into index->params once matched
  Shape shape;
  int expert_layer = -1;  // AutoEP: index into index->autoep_layers
};

struct OptParam {
  int group = 0;
  int64_t index = 0;  // the optimizer's param index
  const Value* state = nullptr;
  const TensorRef* exp_avg = nullptr;
  const TensorRef* exp_avg_sq = nullptr;
  const Value* step = nullptr;
};

std::string ShapeKey(const Shape& s) { return s.ToString(); }

// module entries that are parameters, with tied aliases removed (alias → stored name recorded).
absl::StatusOr<std::vector<Candidate>> ReadCandidates(const CheckpointFile& model) {
  UCP_ASSIGN_OR_RETURN(const Value* module, Require(model.root(), keys::kModule, model.path));
  const std::string ctx = absl::StrCat(model.path, ": ", keys::kModule);
  UCP_ASSIGN_OR_RETURN(const Value* dict, AsDict(module, ctx));
  std::vector<std::string> buffers;
  if (const Value* b = model.root().Get(keys::kBufferNames); b != nullptr && !b->is_none()) {
    UCP_ASSIGN_OR_RETURN(buffers, AsStrList(b, absl::StrCat(model.path, ": ", keys::kBufferNames)));
  }
  std::vector<Candidate> out;
  std::map<std::tuple<const void*, int64_t, std::string>, std::string> seen;
  for (const auto& [k, v] : dict->entries()) {
    UCP_ASSIGN_OR_RETURN(std::string name, AsStr(k, absl::StrCat(ctx, " key")));
    if (std::find(buffers.begin(), buffers.end(), name) != buffers.end()) continue;
    UCP_ASSIGN_OR_RETURN(const TensorRef* t, AsTensor(v, absl::StrCat(ctx, "['", name, "']")));
    auto key = std::make_tuple(static_cast<const void*>(t->storage), t->storage_offset,
                               ShapeKey(t->shape));
    auto [it, inserted] = seen.emplace(key, name);
    if (!inserted) continue;  // a tied alias: the optimizer holds the tensor once
    out.push_back(Candidate{std::move(name), t, -1, t->shape});
  }
  return out;
}

// Tied aliases (module entries sharing an earlier entry's storage view) → stored name.
std::vector<std::pair<std::string, std::string>> TiedAliases(const Value& module) {
  std::vector<std::pair<std::string, std::string>> out;
  std::map<std::tuple<const void*, int64_t, std::string>, std::string> seen;
  for (const auto& [k, v] : module.entries()) {
    if (!k->is(ValueKind::kStr) || !v->is(ValueKind::kTensor)) continue;
    const TensorRef& t = v->tensor();
    auto key =
        std::make_tuple(static_cast<const void*>(t.storage), t.storage_offset, ShapeKey(t.shape));
    auto [it, inserted] = seen.emplace(key, k->str());
    if (!inserted) out.emplace_back(k->str(), it->second);
  }
  return out;
}

absl::StatusOr<std::vector<OptParam>> ReadOptParams(const CheckpointFile& model,
                                                    const Value& optimizer,
                                                    std::vector<const Value*>* groups_out) {
  const std::string ctx = absl::StrCat(model.path, ": ", keys::kOptimizer);
  UCP_ASSIGN_OR_RETURN(const Value* state, Require(optimizer, keys::kState, ctx));
  UCP_RETURN_IF_ERROR(AsDict(state, absl::StrCat(ctx, ".", keys::kState)).status());
  UCP_ASSIGN_OR_RETURN(const Value* groups_v, Require(optimizer, keys::kParamGroups, ctx));
  UCP_ASSIGN_OR_RETURN(auto groups,
                       AsSequence(groups_v, absl::StrCat(ctx, ".", keys::kParamGroups)));
  if (groups.empty())
    return absl::DataLossError(absl::StrCat(ctx, ".", keys::kParamGroups, ": empty"));
  std::vector<OptParam> out;
  std::vector<int64_t> seen;
  for (size_t g = 0; g < groups.size(); ++g) {
    const std::string gctx = absl::StrCat(ctx, ".", keys::kParamGroups, "[", g, "]");
    UCP_ASSIGN_OR_RETURN(const Value* group, AsDict(groups[g], gctx));
    groups_out->push_back(group);
    UCP_ASSIGN_OR_RETURN(const Value* params_v, Require(*group, keys::kParams, gctx));
    UCP_ASSIGN_OR_RETURN(std::vector<int64_t> params,
                         AsIntList(params_v, absl::StrCat(gctx, ".", keys::kParams)));
    for (int64_t i : params) {
      if (i < 0 || std::find(seen.begin(), seen.end(), i) != seen.end()) {
        return absl::DataLossError(
            absl::StrCat(gctx, ".", keys::kParams, ": bad or repeated index ", i));
      }
      seen.push_back(i);
      const std::string sctx = absl::StrCat(ctx, ".", keys::kState, "[", i, "]");
      OptParam p;
      p.group = static_cast<int>(g);
      p.index = i;
      p.state = GetByInt(*state, i);
      if (p.state == nullptr || !p.state->is_dict()) {
        return absl::FailedPreconditionError(absl::StrCat(
            sctx, ": missing (a parameter the optimizer never stepped has no shape to match by)"));
      }
      UCP_ASSIGN_OR_RETURN(
          p.exp_avg, AsTensor(p.state->Get(keys::kExpAvg), absl::StrCat(sctx, ".", keys::kExpAvg)));
      UCP_ASSIGN_OR_RETURN(p.exp_avg_sq, AsTensor(p.state->Get(keys::kExpAvgSq),
                                                  absl::StrCat(sctx, ".", keys::kExpAvgSq)));
      if (!(p.exp_avg->shape == p.exp_avg_sq->shape)) {
        return absl::DataLossError(absl::StrCat(sctx, ": exp_avg and exp_avg_sq shapes differ"));
      }
      p.step = p.state->Get(keys::kStep);
      out.push_back(p);
    }
  }
  return out;
}

// Optimizer param i ↔ candidate, per shape, in order (see the header comment).
absl::StatusOr<std::vector<int>> MatchNames(const std::string& path,
                                            const std::vector<OptParam>& params,
                                            const std::vector<Candidate>& candidates) {
  std::map<std::string, std::vector<int>> cand_by_shape, param_by_shape;
  for (int c = 0; c < static_cast<int>(candidates.size()); ++c) {
    cand_by_shape[ShapeKey(candidates[c].shape)].push_back(c);
  }
  for (int i = 0; i < static_cast<int>(params.size()); ++i) {
    param_by_shape[ShapeKey(params[i].exp_avg->shape)].push_back(i);
  }
  std::vector<int> match(params.size(), -1);
  for (const auto& [shape, ps] : param_by_shape) {
    const std::vector<int>& cs = cand_by_shape[shape];
    bool one_group = true;
    for (int i : ps) one_group = one_group && params[i].group == params[ps[0]].group;
    if (cs.size() != ps.size() || !one_group) {
      return absl::UnimplementedError(
          absl::StrCat(path, ": cannot tell which module tensors the optimizer's ", ps.size(),
                       " parameter(s) of shape ", shape, " are: the module has ", cs.size(),
                       " non-buffer tensor(s) of that shape",
                       one_group ? "" : " and the optimizer spreads them over several param groups",
                       " (ZeRO-0 files do not record parameter names)"));
    }
    // Order inside the group: params in optimizer order ↔ candidates in module order.
    for (size_t j = 0; j < ps.size(); ++j) match[ps[j]] = cs[j];
  }
  for (size_t i = 1; i < params.size(); ++i) {
    if (params[i].group == params[i - 1].group && match[i] < match[i - 1]) {
      return absl::UnimplementedError(
          absl::StrCat(path, ": the optimizer's param group ", params[i].group, " lists '",
                       candidates[match[i]].name, "' after '", candidates[match[i - 1]].name,
                       "', not in module order; cannot name its parameters"));
    }
  }
  return match;
}

// FP16_UnfusedOptimizer's fp32 master weights `fp32_groups[g][j]`, one per parameter in
// param-group order, checked against the groups and the exp_avg shapes.
absl::StatusOr<std::vector<const TensorRef*>> ReadMasterWeights(
    const CheckpointFile& model, const Value& masters, const std::vector<OptParam>& params,
    const std::vector<const Value*>& groups) {
  std::vector<const TensorRef*> master_of(params.size(), nullptr);
  const std::string mctx = absl::StrCat(model.path, ": ", keys::kOptimizer, ".", keys::kFp32Groups);
  if (masters.items().size() != groups.size()) {
    return absl::DataLossError(absl::StrCat(mctx, ": ", masters.items().size(),
                                            " groups, param_groups has ", groups.size()));
  }
  size_t i = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    UCP_ASSIGN_OR_RETURN(auto list,
                         AsSequence(masters.items()[g], absl::StrCat(mctx, "[", g, "]")));
    for (size_t j = 0; j < list.size(); ++j, ++i) {
      const std::string what = absl::StrCat(mctx, "[", g, "][", j, "]");
      if (i >= params.size() || params[i].group != static_cast<int>(g)) {
        return absl::DataLossError(
            absl::StrCat(what, ": more master weights than the group's params"));
      }
      UCP_ASSIGN_OR_RETURN(master_of[i], AsTensor(list[j], what));
      if (!(master_of[i]->shape == params[i].exp_avg->shape)) {
        return absl::DataLossError(absl::StrCat(what, ": shape ", master_of[i]->shape.ToString(),
                                                " differs from its exp_avg"));
      }
    }
  }
  if (i != params.size())
    return absl::DataLossError(absl::StrCat(mctx, ": fewer master weights than params"));
  return master_of;
}

// The module tensors no optimizer state names: frozen parameters, whole in the model file.
absl::Status AddFrozenParams(CheckpointIndex* index, int model_file,
                             const std::vector<Candidate>& candidates) {
  for (const Candidate& c : candidates) {
    if (c.assigned >= 0 || c.tensor == nullptr) continue;
    FrozenParam fp;
    fp.name = c.name;
    fp.shape = c.tensor->shape;
    UCP_ASSIGN_OR_RETURN(TensorLocation loc,
                         Locate(*index, model_file, *c.tensor, 0, ShapeNumel(fp.shape),
                                absl::StrCat(keys::kModule, "['", c.name, "']")));
    fp.pieces.push_back(FrozenParam::Piece{0, 0, 0, std::move(loc)});
    index->frozen_params.push_back(std::move(fp));
  }
  return absl::OkStatus();
}

int ExpertFile(const CheckpointIndex& index, int layer, int expert) {
  for (int i : index.expert_files) {
    const formats::deepspeed::FileName& n = index.files[i].name;
    if (n.layer == layer && n.expert == expert && n.mp_rank == 0) return i;
  }
  return -1;
}

// One EP rank's torch optimizer (expp_rank_<e>): its params (aligned with the model file's) and,
// under FP16_UnfusedOptimizer, their fp32 masters.
struct EpOptimizer {
  int file = -1;
  std::vector<OptParam> params;
  std::vector<const TensorRef*> masters;
};

absl::StatusOr<EpOptimizer> ReadEpOptimizer(const CheckpointIndex& index, int file,
                                            size_t num_params, bool bf16) {
  const CheckpointFile& f = index.files[file];
  EpOptimizer out;
  out.file = file;
  UCP_ASSIGN_OR_RETURN(const Value* optimizer, Require(f.root(), keys::kOptimizer, f.path));
  UCP_RETURN_IF_ERROR(AsDict(optimizer, absl::StrCat(f.path, ": ", keys::kOptimizer)).status());
  const Value* torch_state = optimizer;
  const Value* masters = nullptr;
  if (bf16) {
    UCP_ASSIGN_OR_RETURN(torch_state, Require(*optimizer, keys::kOptimizerStateDict, f.path));
    UCP_ASSIGN_OR_RETURN(masters, Require(*optimizer, keys::kFp32Groups, f.path));
  }
  std::vector<const Value*> groups;
  UCP_ASSIGN_OR_RETURN(out.params, ReadOptParams(f, *torch_state, &groups));
  if (out.params.size() != num_params) {
    return absl::FailedPreconditionError(absl::StrCat(
        f.path, ": ", out.params.size(), " optimizer params, the model file's has ", num_params));
  }
  out.masters.assign(num_params, nullptr);
  if (masters != nullptr) {
    UCP_ASSIGN_OR_RETURN(out.masters, ReadMasterWeights(f, *masters, out.params, groups));
  }
  return out;
}

// Drops the routers' `gate.gate` aliases and appends the fused expert weights as candidates.
absl::Status AddExpertCandidates(const CheckpointIndex& index, std::vector<Candidate>* candidates) {
  for (const AutoEpLayer& layer : index.autoep_layers) {
    const std::string alias = absl::StrCat(layer.module_path, ".gate.gate.weight");
    const std::string router = absl::StrCat(layer.module_path, ".router.gate.weight");
    auto named = [&](const std::string& n) {
      return std::find_if(candidates->begin(), candidates->end(),
                          [&](const Candidate& c) { return c.name == n; });
    };
    if (auto a = named(alias); a != candidates->end() && named(router) != candidates->end())
      candidates->erase(a);
  }
  for (size_t l = 0; l < index.autoep_layers.size(); ++l) {
    const AutoEpLayer& layer = index.autoep_layers[l];
    const int expert_file = ExpertFile(index, layer.moe_layer_id, 0);
    if (expert_file < 0) {
      return absl::NotFoundError(absl::StrCat(index.dir.tag_dir, ": no layer_", layer.moe_layer_id,
                                              "_expert_0_mp_rank_00_model_states.pt"));
    }
    const CheckpointFile& f = index.files[expert_file];
    for (absl::string_view w : keys::kAutoepFusedWeights) {
      const std::string name = absl::StrCat(layer.expert_key_prefix, ".", w);
      const std::string key = absl::StrCat(name, ".0");
      UCP_ASSIGN_OR_RETURN(const TensorRef* row,
                           AsTensor(f.root().Get(key), absl::StrCat(f.path, ": '", key, "'")));
      std::vector<int64_t> dims = {layer.num_local_experts};
      for (int64_t d : row->shape.dims()) dims.push_back(d);
      candidates->push_back(Candidate{name, nullptr, -1, Shape(dims), static_cast<int>(l)});
    }
  }
  return absl::OkStatus();
}

// The fused expert weight of candidate c (optimizer param i): each EP rank's local experts, one
// fragment per expert row.
absl::StatusOr<Parameter> ExpertParam(const CheckpointIndex& index, const Candidate& c,
                                      const OptParam& op, size_t i,
                                      const std::vector<EpOptimizer>& eps) {
  const AutoEpLayer& layer = index.autoep_layers[c.expert_layer];
  Parameter p;
  p.name = c.name;
  p.shape = c.shape;
  p.param_group = p.flat_group = op.group;
  p.expert = ExpertInfo{c.expert_layer, layer.num_experts, layer.num_local_experts};
  const int64_t numel = ShapeNumel(p.shape), el = layer.num_local_experts, row = numel / el;
  ParamSlice slice{0, p.shape, {}};
  for (int e = 0; e < static_cast<int>(eps.size()); ++e) {
    const EpOptimizer& ep = eps[e];
    const OptParam& oe = ep.params[i];
    const std::string what = absl::StrCat(FileContext(index, ep.file), ": ", keys::kOptimizer, ".",
                                          keys::kState, "[", oe.index, "] ('", c.name, "')");
    if (oe.group != op.group || !(oe.exp_avg->shape == p.shape)) {
      return absl::DataLossError(absl::StrCat(what, ": group ", oe.group, ", shape ",
                                              oe.exp_avg->shape.ToString(), ", expected ", op.group,
                                              ", ", p.shape.ToString()));
    }
    UCP_RETURN_IF_ERROR(CheckSameStep(index, ep.file, oe.step, eps[0].file, eps[0].params[i].step,
                                      absl::StrCat("the step of '", c.name, "'")));
    for (int64_t j = 0; j < el; ++j) {
      Fragment f;
      f.ep_rank = e;
      f.offset = j * row;
      f.merged_offset = e * numel + j * row;
      f.numel = row;
      if (ep.masters[i] != nullptr) {
        UCP_ASSIGN_OR_RETURN(f.states[0], Locate(index, ep.file, *ep.masters[i], j * row, row,
                                                 absl::StrCat(what, " master weight")));
      } else {
        const int gid = static_cast<int>(e * el + j);
        const int file = ExpertFile(index, layer.moe_layer_id, gid);
        const std::string key = absl::StrCat(c.name, ".", gid);
        if (file < 0) {
          return absl::NotFoundError(absl::StrCat(index.dir.tag_dir, ": no layer_",
                                                  layer.moe_layer_id, "_expert_", gid,
                                                  "_mp_rank_00_model_states.pt"));
        }
        const std::string kctx = absl::StrCat(index.files[file].path, ": '", key, "'");
        UCP_ASSIGN_OR_RETURN(const TensorRef* t, AsTensor(index.files[file].root().Get(key), kctx));
        UCP_ASSIGN_OR_RETURN(f.states[0], Locate(index, file, *t, 0, row, kctx));
      }
      UCP_ASSIGN_OR_RETURN(f.states[1], Locate(index, ep.file, *oe.exp_avg, j * row, row,
                                               absl::StrCat(what, ".", keys::kExpAvg)));
      UCP_ASSIGN_OR_RETURN(f.states[2], Locate(index, ep.file, *oe.exp_avg_sq, j * row, row,
                                               absl::StrCat(what, ".", keys::kExpAvgSq)));
      f.states[0].requires_grad = true;
      slice.fragments.push_back(std::move(f));
    }
  }
  p.slices.push_back(std::move(slice));
  return p;
}

}  // namespace

absl::Status IndexZero0(CheckpointIndex* index) {
  const int model_file = index->model_files[0];
  const CheckpointFile& model = index->files[model_file];
  UCP_ASSIGN_OR_RETURN(const Value* optimizer, Require(model.root(), keys::kOptimizer, model.path));
  if (optimizer->is_none()) {
    return absl::FailedPreconditionError(
        absl::StrCat(model.path, ": '", keys::kOptimizer,
                     "' is None: a ZeRO-0 checkpoint saved without optimizer "
                     "state has nothing to convert"));
  }
  UCP_RETURN_IF_ERROR(AsDict(optimizer, absl::StrCat(model.path, ": ", keys::kOptimizer)).status());
  // FP16_UnfusedOptimizer (bf16 ZeRO-0, §2.4): the torch state is nested and the fp32 master
  // weights are `fp32_groups[g][j]`, one tensor per parameter in param-group order.
  const Value* masters = optimizer->Get(keys::kFp32Groups);
  const Value* torch_state = optimizer;
  if (const Value* inner = optimizer->Get(keys::kOptimizerStateDict); inner != nullptr) {
    if (masters == nullptr || !masters->is_sequence()) {
      return absl::UnimplementedError(absl::StrCat(model.path, ": ", keys::kOptimizer, " wraps ",
                                                   keys::kOptimizerStateDict,
                                                   " without per-parameter ", keys::kFp32Groups,
                                                   " (FP16_Optimizer's flat groups are not "
                                                   "supported)"));
    }
    torch_state = inner;
  } else {
    masters = nullptr;
  }
  std::vector<const Value*> groups;
  UCP_ASSIGN_OR_RETURN(std::vector<OptParam> params, ReadOptParams(model, *torch_state, &groups));
  std::vector<const TensorRef*> master_of(params.size(), nullptr);
  if (masters != nullptr) {
    UCP_ASSIGN_OR_RETURN(master_of, ReadMasterWeights(model, *masters, params, groups));
  }
  UCP_ASSIGN_OR_RETURN(std::vector<Candidate> candidates, ReadCandidates(model));
  std::vector<EpOptimizer> eps;
  if (!index->autoep_layers.empty()) {
    const int ep = index->topology.ep;
    if (static_cast<int>(index->expert_optim_files.size()) != ep) {
      return absl::NotFoundError(absl::StrCat(index->dir.tag_dir, ": AutoEP ep_size ", ep, ", ",
                                              index->expert_optim_files.size(),
                                              " expp_rank_*_mp_rank_00_optim_states.pt files"));
    }
    for (int file : index->expert_optim_files) {
      UCP_ASSIGN_OR_RETURN(EpOptimizer e,
                           ReadEpOptimizer(*index, file, params.size(), masters != nullptr));
      eps.push_back(std::move(e));
    }
    UCP_RETURN_IF_ERROR(AddExpertCandidates(*index, &candidates));
  } else if (!index->expert_optim_files.empty() || !index->expert_files.empty()) {
    return absl::UnimplementedError(
        absl::StrCat(index->dir.tag_dir,
                     ": MoE files without ZeRO and without AutoEP metadata (ds_autoep_layers)"));
  }
  UCP_ASSIGN_OR_RETURN(std::vector<int> match, MatchNames(model.path, params, candidates));

  ZeroKind& zk = index->kind;
  auto master = [&](size_t i) {
    return master_of[i] != nullptr ? master_of[i] : candidates[match[i]].tensor;
  };
  zk.master_dtype = params.empty() || master(0) == nullptr ? DType::kF32 : master(0)->dtype;
  zk.state_dtype = params.empty() ? DType::kF32 : params[0].exp_avg->dtype;
  for (size_t g = 0; g < groups.size(); ++g) {
    const int gi = static_cast<int>(g);
    index->param_groups.push_back(ParamGroup{gi, groups[g], {gi}, false});
    FlatGroup fg;
    fg.index = fg.param_group = gi;
    fg.partition_count = 1;
    index->flat_groups.push_back(std::move(fg));
  }
  const std::string octx = absl::StrCat(keys::kOptimizer, ".", keys::kState);
  for (size_t i = 0; i < params.size(); ++i) {
    const OptParam& op = params[i];
    Candidate& c = candidates[match[i]];
    const std::string what = absl::StrCat(octx, "[", op.index, "] ('", c.name, "')");
    if (c.expert_layer >= 0) {
      UCP_ASSIGN_OR_RETURN(Parameter p, ExpertParam(*index, c, op, i, eps));
      for (const Fragment& f : p.slices[0].fragments) {
        if (f.states[0].dtype != zk.master_dtype || f.states[1].dtype != zk.state_dtype ||
            f.states[2].dtype != zk.state_dtype) {
          return absl::DataLossError(
              absl::StrCat(model.path, ": ", what, ": dtypes differ from the other parameters"));
        }
      }
      FlatGroup& fg = index->flat_groups[op.group];
      fg.expert = true;
      index->param_groups[op.group].expert = true;
      if (fg.ranks.empty()) {
        fg.ranks.push_back(FlatGroupRank{0, 0, 0, 0, 0, op.step, model_file});
      } else {
        UCP_RETURN_IF_ERROR(
            CheckSameStep(*index, model_file, op.step, model_file, fg.ranks[0].step,
                          absl::StrCat("the step of param group ", op.group, " (", what, ")")));
      }
      UCP_ASSIGN_OR_RETURN(fg.ranks[0].partition_numel,
                           AddCount(fg.ranks[0].partition_numel, p.numel(), what));
      c.assigned = static_cast<int>(index->params.size());
      fg.params.push_back(c.assigned);
      index->params.push_back(std::move(p));
      continue;
    }
    if (master(i)->dtype != zk.master_dtype || op.exp_avg->dtype != zk.state_dtype ||
        op.exp_avg_sq->dtype != zk.state_dtype) {
      return absl::DataLossError(
          absl::StrCat(model.path, ": ", what, ": dtypes differ from the other parameters"));
    }
    FlatGroup& fg = index->flat_groups[op.group];
    Parameter p;
    p.name = c.name;
    p.shape = c.tensor->shape;
    p.param_group = p.flat_group = op.group;
    const int64_t numel = ShapeNumel(p.shape);
    Fragment f;
    f.numel = numel;
    const std::string master_what = master_of[i] != nullptr
                                        ? absl::StrCat(what, " master weight")
                                        : absl::StrCat(keys::kModule, "['", c.name, "']");
    UCP_ASSIGN_OR_RETURN(f.states[0],
                         Locate(*index, model_file, *master(i), 0, numel, master_what));
    UCP_ASSIGN_OR_RETURN(f.states[1], Locate(*index, model_file, *op.exp_avg, 0, numel,
                                             absl::StrCat(what, ".", keys::kExpAvg)));
    UCP_ASSIGN_OR_RETURN(f.states[2], Locate(*index, model_file, *op.exp_avg_sq, 0, numel,
                                             absl::StrCat(what, ".", keys::kExpAvgSq)));
    f.states[0].requires_grad = true;  // a master weight, as DeepSpeed's flat fp32 partitions
    p.slices.push_back(ParamSlice{0, p.shape, {std::move(f)}});
    // torch keeps one step per parameter; UCP has one per group, so they must agree.
    if (fg.ranks.empty()) {
      fg.ranks.push_back(FlatGroupRank{0, 0, 0, 0, 0, op.step, model_file});
    } else {
      UCP_RETURN_IF_ERROR(
          CheckSameStep(*index, model_file, op.step, model_file, fg.ranks[0].step,
                        absl::StrCat("the step of param group ", op.group, " (", what, ")")));
    }
    UCP_ASSIGN_OR_RETURN(
        fg.ranks[0].partition_numel,
        AddCount(fg.ranks[0].partition_numel, numel, absl::StrCat(model.path, ": ", what)));
    c.assigned = static_cast<int>(index->params.size());
    fg.params.push_back(c.assigned);
    index->params.push_back(std::move(p));
  }
  UCP_RETURN_IF_ERROR(AddFrozenParams(index, model_file, candidates));
  index->shared_params = TiedAliases(*model.root().Get(keys::kModule));
  for (const AutoEpLayer& layer : index->autoep_layers) {  // the router alias is no tied param
    const std::string alias = absl::StrCat(layer.module_path, ".gate.gate.weight");
    std::erase_if(index->shared_params, [&](const auto& s) { return s.first == alias; });
  }
  return absl::OkStatus();
}

}  // namespace ucp::converters::deepspeed::internal_ds
