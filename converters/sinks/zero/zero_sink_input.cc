// ZeroSinkInputFromIndex and the helpers every input builder shares (ucp_input.cc,
// memory_input.cc).
#include "converters/sinks/zero/zero_sink_input.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/value_access.h"

namespace ucp::converters::sinks {

namespace keys = formats::deepspeed::keys;
namespace ids = formats::deepspeed;
using deepspeed::CheckpointIndex;
using deepspeed::StateKind;
using formats::torch::TensorRef;
using formats::torch::TorchFile;

namespace internal_sink {

absl::StatusOr<int> AddTorchFile(std::shared_ptr<const TorchFile> file, ZeroSinkInput* in) {
  const int fi = static_cast<int>(in->sources.size());
  UCP_RETURN_IF_ERROR(plan::AddStorageRuns(*file, fi, &in->storage_runs));
  // The byte source shares the TorchFile's ownership: the Values stay valid as long as it lives.
  if (in->num_file_sources != fi) {
    return absl::InternalError(absl::StrCat(file->name(), ": a file after computed sources"));
  }
  in->sources.push_back(std::shared_ptr<const ByteSource>(file, &file->zip().source()));
  in->num_file_sources = fi + 1;
  in->owners.push_back(std::move(file));
  return fi;
}

absl::StatusOr<ucp::ByteRun> TensorRun(const ZeroSinkInput& in, const TensorRef& t, int64_t numel,
                                       absl::string_view what) {
  if (!t.IsContiguous() || numel < 0 || numel > t.NumElements()) {
    return absl::DataLossError(absl::StrCat(what, ": expected a contiguous tensor of at least ",
                                            numel, " elements, found shape ", t.shape.ToString()));
  }
  auto it = in.storage_runs.find(t.storage);
  if (it == in.storage_runs.end())
    return absl::InternalError(absl::StrCat(what, ": storage not located"));
  const uint64_t elem = DTypeSize(t.dtype);
  const uint64_t begin = static_cast<uint64_t>(t.storage_offset) * elem;
  const uint64_t size = static_cast<uint64_t>(numel) * elem;
  if (t.storage_offset < 0 || begin + size > it->second.size) {
    return absl::DataLossError(
        absl::StrCat(what, ": tensor runs past its storage record (", it->second.size, " bytes)"));
  }
  return ucp::ByteRun{it->second.file, it->second.offset + begin, size};
}

absl::StatusOr<absl::flat_hash_map<std::string, int>> AutoEpExperts(const Value& root,
                                                                    absl::string_view what,
                                                                    int* ep) {
  absl::flat_hash_map<std::string, int> out;
  const Value* v = root.Get(keys::kDsAutoepLayers);
  if (v == nullptr || v->is_none()) v = root.Get(keys::kAutoepLayersLegacy);
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
    for (absl::string_view w : keys::kAutoepFusedWeights)
      out[absl::StrCat(prefix, ".", w)] = static_cast<int>(n);
  }
  return out;
}

}  // namespace internal_sink

namespace {

// A parameter's fragments of MP rank 0, in merged order, as runs of each state.
// TP rank `mp`'s slice of a parameter: its fragments in merged order, as runs of each state.
SinkParam ParamFromIndex(const deepspeed::Parameter& p, int mp, const deepspeed::ZeroKind& kind) {
  SinkParam z;
  z.name = p.name;
  z.shape = p.slices[mp].shape;
  z.group = p.flat_group;
  z.expert = p.is_expert();
  z.num_experts = p.is_expert() ? p.expert->num_experts : 0;
  std::vector<const deepspeed::Fragment*> frags;
  for (const deepspeed::Fragment& f : p.slices[mp].fragments) frags.push_back(&f);
  std::stable_sort(frags.begin(), frags.end(),
                   [](const deepspeed::Fragment* a, const deepspeed::Fragment* b) {
                     return a->merged_offset < b->merged_offset;
                   });
  for (StateKind s : deepspeed::kAllStates) {
    TensorRuns& runs = z.states[static_cast<int>(s)];
    runs.dtype = s == StateKind::kFp32 ? kind.master_dtype : kind.state_dtype;
    for (const deepspeed::Fragment* f : frags) {
      if (f->numel == 0) continue;
      const deepspeed::TensorLocation& loc = f->state(s);
      runs.dtype = loc.dtype;
      runs.runs.push_back(ucp::ByteRun{loc.file, loc.file_offset, loc.num_bytes()});
    }
  }
  return z;
}

SinkFrozen FrozenFromIndex(const deepspeed::FrozenParam& fp) {
  SinkFrozen f;
  f.name = fp.name;
  f.shape = fp.shape;
  std::vector<deepspeed::FrozenParam::Piece> pieces = fp.pieces;
  std::sort(pieces.begin(), pieces.end(),
            [](const auto& a, const auto& b) { return a.offset < b.offset; });
  for (const auto& piece : pieces) {
    f.bytes.dtype = piece.location.dtype;
    if (piece.location.numel > 0) {
      f.bytes.runs.push_back(ucp::ByteRun{piece.location.file, piece.location.file_offset,
                                          piece.location.num_bytes()});
    }
  }
  return f;
}

}  // namespace

absl::StatusOr<std::vector<ZeroSinkInput>> ZeroSinkInputsFromIndex(const CheckpointIndex& index) {
  const ucp::Topology& t = index.topology;
  const int stage = index.kind.zero_stage;
  if (t.pp != 1 || (t.tp != 1 && (stage == 0 || stage == 3))) {
    return absl::UnimplementedError(
        absl::StrCat(index.dir.tag_dir, ": ZeRO-", stage, " with tp=", t.tp, ", pp=", t.pp,
                     " (resharded: pp = 1, and tp = 1 at ZeRO-0 and ZeRO-3)"));
  }
  ZeroSinkInput in;
  in.kind = SinkInputKind::kZeroFolder;
  in.origin = index.dir.tag_dir;
  for (const deepspeed::CheckpointFile& f : index.files) {
    UCP_RETURN_IF_ERROR(internal_sink::AddTorchFile(f.torch, &in).status());
  }
  in.topology = t;
  in.zero_stage = stage;
  in.module_per_tensor = stage == 0;
  in.bf16_optimizer = index.kind.wrapper == deepspeed::OptimizerWrapper::kBf16Optimizer;
  for (const deepspeed::FlatGroup& g : index.flat_groups) {
    SinkGroup group;
    group.expert = g.expert;
    group.params = g.params;
    if (stage != 3) {
      if (g.param_group < 0 || g.param_group >= static_cast<int>(index.param_groups.size())) {
        return absl::DataLossError(
            absl::StrCat(in.origin, ": flat group ", g.index, " has no param group"));
      }
      group.step = g.step();
      group.hyperparameters = index.param_groups[g.param_group].hyperparameters;
    }
    in.groups.push_back(std::move(group));
  }
  in.frozen_params = static_cast<int>(index.frozen_params.size());
  if (stage == 3) {
    for (const deepspeed::FrozenParam& fp : index.frozen_params)
      in.frozen.push_back(FrozenFromIndex(fp));
  }
  in.native_moe_num_experts = index.native_moe_num_experts;
  if (stage == 0) in.shared_params = index.shared_params;
  if (!in.native_moe_num_experts.empty()) {
    for (int fi : index.expert_files) {
      if (index.files[fi].name.mp_rank == 0)
        in.native_expert_files.emplace_back(index.files[fi].basename, fi);
    }
  }
  std::vector<ZeroSinkInput> out;
  for (int mp = 0; mp < t.tp; ++mp) {  // every TP rank shares the sources, groups and frozen params
    ZeroSinkInput rank = in;
    rank.mp_rank = mp;
    for (const deepspeed::Parameter& p : index.params)
      rank.params.push_back(ParamFromIndex(p, mp, index.kind));
    rank.model_root = &index.model_file(mp, 0).root();
    rank.optimizer_template =
        stage == 0 ? nullptr : index.optim_file(0, mp).root().Get(keys::kOptimizerStateDict);
    out.push_back(std::move(rank));
  }
  return out;
}

absl::StatusOr<ZeroSinkInput> ZeroSinkInputFromIndex(const CheckpointIndex& index) {
  UCP_ASSIGN_OR_RETURN(std::vector<ZeroSinkInput> inputs, ZeroSinkInputsFromIndex(index));
  if (inputs.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(index.dir.tag_dir, ": tp=", inputs.size(),
                     ": one input per TP rank (ZeroSinkInputsFromIndex)"));
  }
  return std::move(inputs[0]);
}

}  // namespace ucp::converters::sinks
