#include "converters/sources/zero_source.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/plan/merge_rules.h"
#include "converters/plan/merged_state_file.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"

namespace ucp::converters::sources {
namespace {

namespace keys = formats::deepspeed::keys;
using deepspeed::CheckpointIndex;
using deepspeed::Fragment;
using deepspeed::Parameter;
using deepspeed::StateKind;
using deepspeed::ZeroKind;
using formats::torch::Value;
using plan::internal_plan::MergeRules;
using plan::internal_plan::ParamKeys;
using ucp::ByteRun;
using ucp::ParamMeta;
using ucp::ParamRole;
using ucp::ParamState;
using ucp::StateMeta;

ParamState ToParamState(StateKind s) {
  switch (s) {
    case StateKind::kFp32: return ParamState::kFp32;
    case StateKind::kExpAvg: return ParamState::kExpAvg;
    case StateKind::kExpAvgSq: return ParamState::kExpAvgSq;
  }
  return ParamState::kFp32;
}

StateKind ToStateKind(ParamState s) {
  switch (s) {
    case ParamState::kFp32: return StateKind::kFp32;
    case ParamState::kExpAvg: return StateKind::kExpAvg;
    case ParamState::kExpAvgSq: return StateKind::kExpAvgSq;
  }
  return StateKind::kFp32;
}

DType StateDType(const ZeroKind& zk, StateKind s) {
  return s == StateKind::kFp32 ? zk.master_dtype : zk.state_dtype;
}

// How a TP parameter is merged, for humans.
std::string TpText(const ParamKeys& k, int tp) {
  switch (k.layout.cut.kind) {
    case ucp::TpMergeKind::kReplicated: return absl::StrCat("tp ", tp, " replicated (mp rank 0)");
    case ucp::TpMergeKind::kAverage: return absl::StrCat("tp ", tp, " averaged");
    case ucp::TpMergeKind::kConcat: break;
  }
  std::string text = k.is_sub_params()
                         ? absl::StrCat("tp ", tp, " sub-parameters")
                         : absl::StrCat("tp ", tp, " cat dim ", k.cat_dim.value_or(0));
  if (k.n_sub_params) absl::StrAppend(&text, ", ", *k.n_sub_params, " sub-params");
  if (k.vocab_tensor) absl::StrAppend(&text, ", vocabulary (", k.shape.dim(0), " rows)");
  return text;
}

std::string Partitioning(const CheckpointIndex& index, const Parameter& p,
                         const std::string& tp_text) {
  const ucp::Topology& t = index.topology;
  const ZeroKind& zk = index.kind;
  std::string text = zk.zero_stage == 0 ? "whole (zero0)" : absl::StrCat("zero", zk.zero_stage);
  if (zk.zero_stage >= 1) {
    const deepspeed::FlatGroup& g = index.flat_groups[p.flat_group];
    absl::StrAppend(&text, zk.zero_stage == 3 ? " partitioned" : " flat group ",
                    zk.zero_stage == 3 ? "" : absl::StrCat(g.index), " over ", g.partition_count,
                    g.expert ? " expert-dp ranks" : " dp ranks");
  }
  if (p.is_expert()) {
    absl::StrAppend(&text, p.expert->stacked ? ", native MoE expert" : ", AutoEP experts", " (ep ",
                    t.ep, ", ", p.expert->num_experts, " experts)");
  }
  if (!tp_text.empty()) absl::StrAppend(&text, ", ", tp_text);
  // The fragments read: every slice's for a TP merge that moves bytes of all ranks, else (tp 1,
  // experts, tp-replicated) MP rank 0's.
  const bool every_slice = !tp_text.empty() && tp_text.find("replicated") == std::string::npos;
  size_t n = 0;
  for (const deepspeed::ParamSlice& slice : p.slices) {
    if (every_slice || slice.mp_rank == 0) n += slice.fragments.size();
  }
  absl::StrAppend(&text, ", ", n, n == 1 ? " fragment" : " fragments");
  return text;
}

// tp 1 (and experts): the fragments of MP rank 0, in merged order.
absl::Status AddFragmentRuns(const CheckpointIndex& index, const Parameter& p, ParamMeta& meta) {
  std::vector<const Fragment*> frags;
  for (const Fragment& f : p.slices.at(0).fragments) frags.push_back(&f);
  std::stable_sort(frags.begin(), frags.end(), [](const Fragment* a, const Fragment* b) {
    return a->merged_offset < b->merged_offset;
  });
  for (StateKind s : deepspeed::kAllStates) {
    StateMeta state;
    state.dtype = StateDType(index.kind, s);
    int64_t expected = 0;
    bool present = true;
    for (const Fragment* f : frags) {
      const deepspeed::TensorLocation& loc = f->state(s);
      if (loc.file < 0) {
        present = false;
        break;
      }
      if (f->merged_offset != expected || loc.dtype != state.dtype) {
        return absl::DataLossError(absl::StrCat(index.dir.tag_dir, ": parameter '", p.name,
                                                "': fragments of ", deepspeed::StateName(s),
                                                " do not tile the merged tensor"));
      }
      expected += f->numel;
      if (loc.num_bytes() > 0) {
        state.runs.push_back(ByteRun{loc.file, loc.file_offset, loc.num_bytes()});
      }
    }
    if (present) meta.states[static_cast<int>(ToParamState(s))] = std::move(state);
  }
  return absl::OkStatus();
}

// tp > 1: the runs of the merge `k` describes, cut to the view (vocabulary rows); none for an
// averaged parameter (ReadState computes it).
absl::Status AddTpRuns(const CheckpointIndex& index, const Parameter& p, const ParamKeys& k,
                       ParamMeta& meta) {
  const int64_t view_numel = k.shape.NumElements().value_or(0);
  for (StateKind s : deepspeed::kAllStates) {
    StateMeta state;
    state.dtype = StateDType(index.kind, s);
    bool present = true;
    for (const deepspeed::ParamSlice& slice : p.slices) {
      for (const Fragment& f : slice.fragments) {
        const deepspeed::TensorLocation& loc = f.state(s);
        if (loc.file < 0) present = false;
        if (loc.file >= 0 && loc.dtype != state.dtype) {
          return absl::DataLossError(
              absl::StrCat(index.files[loc.file].path, ": parameter '", p.name, "' (mp rank ",
                           slice.mp_rank, "): ", deepspeed::StateName(s), " is ",
                           DTypeName(loc.dtype), ", expected ", DTypeName(state.dtype)));
        }
      }
    }
    if (!present) continue;
    if (k.layout.cut.kind != ucp::TpMergeKind::kAverage) {
      const uint64_t elem = DTypeSize(state.dtype);
      const uint64_t limit = static_cast<uint64_t>(view_numel) * elem;
      uint64_t at = 0;
      for (const ucp::TpRun& run : k.layout.runs) {
        for (const plan::internal_plan::TpRunPiece& piece :
             plan::internal_plan::TpRunPieces(p, s, run, elem)) {
          if (static_cast<uint64_t>(piece.merged_offset) * elem != at) {
            return absl::DataLossError(absl::StrCat(index.dir.tag_dir, ": parameter '", p.name,
                                                    "': TP slices of ", deepspeed::StateName(s),
                                                    " do not tile the merged tensor"));
          }
          const uint64_t take = at >= limit ? 0 : std::min(piece.bytes, limit - at);
          if (take > 0) state.runs.push_back(ByteRun{piece.file, piece.file_offset, take});
          at += piece.bytes;
        }
      }
      if (at < limit) {
        return absl::DataLossError(absl::StrCat(
            index.dir.tag_dir, ": parameter '", p.name, "': TP slices of ", deepspeed::StateName(s),
            " cover ", at / elem, " of ", view_numel, " elements"));
      }
    }
    meta.states[static_cast<int>(ToParamState(s))] = std::move(state);
  }
  return absl::OkStatus();
}

}  // namespace

ZeroSource::ZeroSource(ucp::SourceInfo info, CheckpointIndex index)
    : Source(ucp::SourceKind::kZero, std::move(info)), index_(std::move(index)) {}

absl::StatusOr<std::unique_ptr<ZeroSource>> ZeroSource::Open(
    const std::string& dir, const deepspeed::OpenOptions& options) {
  UCP_ASSIGN_OR_RETURN(CheckpointIndex index, deepspeed::OpenCheckpoint(dir, options));
  const ucp::Topology& t = index.topology;
  const ZeroKind& zk = index.kind;
  if (t.tp > 1 && zk.zero_stage == 3) {
    return absl::UnimplementedError(absl::StrCat(index.dir.tag_dir,
                                                 ": ZeRO-3 with tensor parallelism (tp ", t.tp,
                                                 ") is not read in place, nor converted"));
  }
  if (t.tp > 1 && !index.universal_checkpoint_info.present()) {
    return absl::FailedPreconditionError(absl::StrCat(index.model_file().path, ": tp ", t.tp,
                                                      " but no ", keys::kUniversalCheckpointInfo,
                                                      ": how the TP slices merge is unknown"));
  }
  ucp::SourceInfo info;
  info.path = index.dir.tag_dir;
  info.tag = index.dir.tag;
  info.zero_stage = zk.zero_stage;
  info.optimizer_wrapper = std::string(deepspeed::OptimizerWrapperName(zk.wrapper));
  info.dp_size = t.dp;
  info.tp_size = t.tp;
  info.pp_size = t.pp;
  info.ep_size = t.ep;
  info.master_dtype = zk.master_dtype;
  std::unique_ptr<ZeroSource> source(new ZeroSource(std::move(info), std::move(index)));
  UCP_RETURN_IF_ERROR(source->Build());
  return source;
}

absl::Status ZeroSource::Build() {
  const CheckpointIndex& index = index_;
  ucp::SourceInfo& info = mutable_info();
  for (const deepspeed::CheckpointFile& f : index.files) AddFile(f.torch->zip().shared_source());
  const deepspeed::CheckpointFile& model = index.model_file(0, 0);
  if (const Value* steps = model.root().Get(keys::kGlobalSteps);
      steps != nullptr && steps->is(formats::torch::ValueKind::kInt)) {
    info.step = steps->int_value();
  }
  for (const deepspeed::ParamGroup& g : index.param_groups) {
    nlohmann::json hp =
        g.hyperparameters ? ucp::PlainJson(*g.hyperparameters) : nlohmann::json::object();
    if (hp.is_object()) hp.erase("params");
    info.param_groups.push_back(std::move(hp));
  }
  for (const deepspeed::AutoEpLayer& l : index.autoep_layers) {
    info.extra["autoep_layers"].push_back({{"module_path", l.module_path},
                                           {"num_experts", l.num_experts},
                                           {"ep_size", l.ep_size},
                                           {"expert_key_prefix", l.expert_key_prefix}});
  }
  UCP_RETURN_IF_ERROR(AddTrainable());
  return AddFrozenBuffersAndAliases();
}

// Trainable parameters, in flat-group order.
absl::Status ZeroSource::AddTrainable() {
  const CheckpointIndex& index = index_;
  const ucp::Topology& t = index.topology;
  std::optional<MergeRules> rules;
  if (t.tp > 1) {
    absl::StatusOr<MergeRules> r = MergeRules::Create(index.universal_checkpoint_info);
    if (!r.ok()) return WithContext(r.status(), index.model_file().path);
    rules = *std::move(r);
  }
  for (const Parameter& p : index.params) {
    ParamMeta meta;
    meta.name = p.name;
    meta.shape = p.merged_shape();
    meta.role = ParamRole::kTrainable;
    meta.param_group = p.param_group;
    meta.expert = p.is_expert();
    meta.num_experts = p.is_expert() ? p.expert->num_experts : 0;
    // ZeRO-0 too: its index keeps torch's per-parameter steps as one per param group.
    if (p.flat_group >= 0 && static_cast<size_t>(p.flat_group) < index.flat_groups.size()) {
      const deepspeed::FlatGroup& g = index.flat_groups[p.flat_group];
      if (const Value* step = g.step(); step != nullptr) {
        absl::StatusOr<double> v =
            ucp::ScalarValue(*index.files[g.ranks[0].step_file].torch, *step);
        if (v.ok()) meta.step = *v;
      }
    }
    if (rules && !p.is_expert()) {  // experts: MP rank 0's, as the UCP writer does
      std::vector<Shape> rank_shapes;
      for (const deepspeed::ParamSlice& slice : p.slices) rank_shapes.push_back(slice.shape);
      absl::StatusOr<ParamKeys> k = rules->ForParam(p.name, rank_shapes);
      if (!k.ok()) return WithContext(k.status(), index.model_file().path);
      meta.shape = k->shape;
      meta.partitioning = Partitioning(index, p, TpText(*k, t.tp));
      UCP_RETURN_IF_ERROR(AddTpRuns(index, p, *k, meta));
      if (k->layout.cut.kind == ucp::TpMergeKind::kAverage) averaged_.insert(p.name);
    } else {
      meta.partitioning = Partitioning(index, p, "");
      UCP_RETURN_IF_ERROR(AddFragmentRuns(index, p, meta));
    }
    UCP_RETURN_IF_ERROR(AddParam(std::move(meta)));
  }
  return absl::OkStatus();
}

absl::Status ZeroSource::AddFrozenBuffersAndAliases() {
  const CheckpointIndex& index = index_;
  // Frozen parameters: fp32 is the model-states copy (the model's dtype), MP rank 0's.
  for (const deepspeed::FrozenParam& fp : index.frozen_params) {
    ParamMeta meta;
    meta.name = fp.name;
    meta.shape = fp.shape;
    meta.role = ParamRole::kFrozen;
    meta.partitioning = fp.pieces.size() > 1 ? absl::StrCat("frozen, ", fp.pieces.size(), " pieces")
                                             : "frozen, whole";
    StateMeta state;
    std::vector<const deepspeed::FrozenParam::Piece*> pieces;
    for (const deepspeed::FrozenParam::Piece& piece : fp.pieces) {
      if (piece.mp_rank == 0) pieces.push_back(&piece);
    }
    std::stable_sort(pieces.begin(), pieces.end(),
                     [](auto* a, auto* b) { return a->offset < b->offset; });
    for (const deepspeed::FrozenParam::Piece* piece : pieces) {
      state.dtype = piece->location.dtype;
      if (piece->location.num_bytes() > 0) {
        state.runs.push_back(ByteRun{piece->location.file, piece->location.file_offset,
                                     piece->location.num_bytes()});
      }
    }
    meta.states[0] = std::move(state);
    UCP_RETURN_IF_ERROR(AddParam(std::move(meta)));
  }

  // Buffers, from the module state dict of the (mp 0, dp 0) model file.
  const deepspeed::CheckpointFile& model = index.model_file(0, 0);
  const Value* module = model.root().Get(keys::kModule);
  const int model_index = static_cast<int>(&model - index.files.data());
  for (const std::string& name : index.buffer_names) {
    const Value* v = module != nullptr ? module->Get(name) : nullptr;
    if (v == nullptr ||
        !v->is(formats::torch::ValueKind::kTensor)) {  // buffer_names lists persistent ones
      return absl::DataLossError(absl::StrCat(model.path, ": buffer '", name,
                                              "' is in buffer_names but has no tensor in module"));
    }
    ParamMeta meta;
    meta.name = name;
    meta.shape = v->tensor().shape;
    meta.role = ParamRole::kBuffer;
    meta.partitioning = "buffer, model states";
    absl::StatusOr<StateMeta> state = ucp::TensorState(*model.torch, v->tensor(), model_index);
    if (!state.ok()) return WithContext(state.status(), absl::StrCat("buffer '", name, "'"));
    meta.states[0] = std::move(*state);
    if (Find(name) == nullptr) UCP_RETURN_IF_ERROR(AddParam(std::move(meta)));
  }

  // Tied aliases share the stored parameter's states.
  for (const auto& [alias, stored] : index.shared_params) {
    const ParamMeta* target = Find(stored);
    if (target == nullptr || Find(alias) != nullptr) continue;
    ParamMeta meta = *target;
    meta.name = alias;
    meta.tied_to = stored;
    meta.partitioning = absl::StrCat("tied to ", stored);
    UCP_RETURN_IF_ERROR(AddParam(std::move(meta)));
  }
  return absl::OkStatus();
}

absl::Status ZeroSource::ReadState(const ParamMeta& param, ParamState state,
                                   absl::Span<std::byte> dest) const {
  const std::string& stored = param.tied_to.empty() ? param.name : param.tied_to;
  if (!averaged_.contains(stored)) return Source::ReadState(param, state, dest);
  const std::optional<StateMeta>& meta = param.state(state);
  if (!meta) {
    return absl::NotFoundError(absl::StrCat(info().path, ": parameter '", param.name, "' has no ",
                                            ucp::ParamStateName(state)));
  }
  const Parameter* p = index_.FindParam(stored);
  if (p == nullptr) {
    return absl::InternalError(absl::StrCat("averaged parameter '", stored, "' not in the index"));
  }
  UCP_ASSIGN_OR_RETURN(
      std::vector<std::byte> mean,
      plan::internal_plan::MeanOfTpSlices(index_, *p, ToStateKind(state), meta->dtype));
  if (mean.size() != dest.size()) {
    return absl::InvalidArgumentError(absl::StrCat("ReadState(", param.name,
                                                   "): destination holds ", dest.size(),
                                                   " bytes, the state ", mean.size()));
  }
  if (!mean.empty()) std::memcpy(dest.data(), mean.data(), mean.size());
  return absl::OkStatus();
}

}  // namespace ucp::converters::sources
