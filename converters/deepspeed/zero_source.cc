#include "converters/deepspeed/zero_source.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "converters/deepspeed/deepspeed_keys.h"
#include "formats/base/status.h"

namespace ucp::converters::deepspeed {
namespace {

using store::ByteRun;
using store::ParamMeta;
using store::ParamRole;
using store::ParamState;
using store::StateMeta;

ParamState ToParamState(StateKind s) {
  switch (s) {
    case StateKind::kFp32: return ParamState::kFp32;
    case StateKind::kExpAvg: return ParamState::kExpAvg;
    case StateKind::kExpAvgSq: return ParamState::kExpAvgSq;
  }
  return ParamState::kFp32;
}

std::string Partitioning(const CheckpointIndex& index, const Parameter& p) {
  const store::Topology& t = index.topology;
  const ZeroKind& zk = index.kind;
  std::string text = zk.zero_stage == 0 ? "whole (zero0)" : absl::StrCat("zero", zk.zero_stage);
  if (zk.zero_stage >= 1) {
    const FlatGroup& g = index.flat_groups[p.flat_group];
    absl::StrAppend(&text, zk.zero_stage == 3 ? " partitioned" : " flat group ", zk.zero_stage == 3 ? "" : absl::StrCat(g.index),
                    " over ", g.partition_count, g.expert ? " expert-dp ranks" : " dp ranks");
  }
  if (p.is_expert()) {
    absl::StrAppend(&text, p.expert->stacked ? ", native MoE expert" : ", AutoEP experts", " (ep ", t.ep,
                    ", ", p.expert->num_experts, " experts)");
  }
  const size_t n = p.slices.empty() ? 0 : p.slices[0].fragments.size();
  absl::StrAppend(&text, ", ", n, n == 1 ? " fragment" : " fragments");
  return text;
}

}  // namespace

ZeroSource::ZeroSource(store::SourceInfo info, CheckpointIndex index)
    : Source(store::SourceKind::kZero, std::move(info)), index_(std::move(index)) {}

absl::StatusOr<std::unique_ptr<ZeroSource>> ZeroSource::Open(const std::string& dir, const OpenOptions& options) {
  UCP_ASSIGN_OR_RETURN(CheckpointIndex index, OpenCheckpoint(dir, options));
  const store::Topology& t = index.topology;
  const ZeroKind& zk = index.kind;
  if (t.mp() > 1) {
    return absl::UnimplementedError(absl::StrCat(index.dir.tag_dir, ": reading a checkpoint with tp/pp size ",
                                                 t.mp(), " in place is not supported yet; run `ucp convert` "
                                                 "to merge it into a Universal Checkpoint first"));
  }
  store::SourceInfo info;
  info.path = index.dir.tag_dir;
  info.tag = index.dir.tag;
  info.zero_stage = zk.zero_stage;
  info.optimizer_wrapper = std::string(OptimizerWrapperName(zk.wrapper));
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
  const ZeroKind& zk = index.kind;
  store::SourceInfo& info = mutable_info();
  for (const CheckpointFile& f : index.files) AddFile(f.torch->zip().shared_source());

  const CheckpointFile& model = index.model_file(0, 0);
  if (const Value* steps = model.root().Get(keys::kGlobalSteps); steps != nullptr && steps->is(formats::torch::ValueKind::kInt)) {
    info.step = steps->int_value();
  }
  for (const ParamGroup& g : index.param_groups) {
    nlohmann::json hp = g.hyperparameters ? store::PlainJson(*g.hyperparameters) : nlohmann::json::object();
    if (hp.is_object()) hp.erase("params");
    info.param_groups.push_back(std::move(hp));
  }
  for (const AutoEpLayer& l : index.autoep_layers) {
    info.extra["autoep_layers"].push_back({{"module_path", l.module_path}, {"num_experts", l.num_experts},
                                           {"ep_size", l.ep_size}, {"expert_key_prefix", l.expert_key_prefix}});
  }

  // Trainable parameters, in flat-group order.
  absl::flat_hash_map<std::string, size_t> added;
  for (const Parameter& p : index.params) {
    ParamMeta meta;
    meta.name = p.name;
    meta.shape = p.merged_shape();
    meta.role = ParamRole::kTrainable;
    meta.param_group = p.param_group;
    meta.expert = p.is_expert();
    meta.num_experts = p.is_expert() ? p.expert->num_experts : 0;
    meta.partitioning = Partitioning(index, p);
    if (zk.zero_stage >= 1) {
      const FlatGroup& g = index.flat_groups[p.flat_group];
      if (const Value* step = g.step(); step != nullptr) {
        const int file = g.ranks[0].step_file;
        absl::StatusOr<double> v = store::ScalarValue(*index.files[file].torch, *step);
        if (v.ok()) meta.step = *v;
      }
    }
    std::vector<const Fragment*> frags;
    for (const Fragment& f : p.slices.at(0).fragments) frags.push_back(&f);
    std::stable_sort(frags.begin(), frags.end(),
                     [](const Fragment* a, const Fragment* b) { return a->merged_offset < b->merged_offset; });
    for (StateKind s : kAllStates) {
      StateMeta state;
      state.dtype = s == StateKind::kFp32 ? zk.master_dtype : zk.state_dtype;
      int64_t expected = 0;
      bool present = true;
      for (const Fragment* f : frags) {
        const TensorLocation& loc = f->state(s);
        if (loc.file < 0) { present = false; break; }
        if (f->merged_offset != expected || loc.dtype != state.dtype) {
          return absl::DataLossError(absl::StrCat(index.dir.tag_dir, ": parameter '", p.name, "': fragments of ",
                                                  StateName(s), " do not tile the merged tensor"));
        }
        expected += f->numel;
        if (loc.num_bytes() > 0) state.runs.push_back(ByteRun{loc.file, loc.file_offset, loc.num_bytes()});
      }
      if (present) meta.states[static_cast<int>(ToParamState(s))] = std::move(state);
    }
    added[meta.name] = params().size();
    UCP_RETURN_IF_ERROR(AddParam(std::move(meta)));
  }

  // Frozen parameters: fp32 is the model-states copy (the model's dtype).
  for (const FrozenParam& fp : index.frozen_params) {
    ParamMeta meta;
    meta.name = fp.name;
    meta.shape = fp.shape;
    meta.role = ParamRole::kFrozen;
    meta.partitioning = fp.pieces.size() > 1 ? absl::StrCat("frozen, ", fp.pieces.size(), " pieces") : "frozen, whole";
    StateMeta state;
    std::vector<const FrozenParam::Piece*> pieces;
    for (const FrozenParam::Piece& piece : fp.pieces) {
      if (piece.mp_rank == 0) pieces.push_back(&piece);
    }
    std::stable_sort(pieces.begin(), pieces.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (const FrozenParam::Piece* piece : pieces) {
      state.dtype = piece->location.dtype;
      if (piece->location.num_bytes() > 0) {
        state.runs.push_back(ByteRun{piece->location.file, piece->location.file_offset, piece->location.num_bytes()});
      }
    }
    meta.states[0] = std::move(state);
    UCP_RETURN_IF_ERROR(AddParam(std::move(meta)));
  }

  // Buffers, from the module state dict of the (mp 0, dp 0) model file.
  const Value* module = model.root().Get(keys::kModule);
  const int model_index = static_cast<int>(&model - index.files.data());
  for (const std::string& name : index.buffer_names) {
    const Value* v = module != nullptr ? module->Get(name) : nullptr;
    if (v == nullptr || !v->is(formats::torch::ValueKind::kTensor)) continue;  // e.g. non-persistent buffers
    ParamMeta meta;
    meta.name = name;
    meta.shape = v->tensor().shape;
    meta.role = ParamRole::kBuffer;
    meta.partitioning = "buffer, model states";
    absl::StatusOr<StateMeta> state = store::TensorState(*model.torch, v->tensor(), model_index);
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

}  // namespace ucp::converters::deepspeed
