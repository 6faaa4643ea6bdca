// AutoEP and native MoE expert files and metadata of the ZeRO-1/2 writer (zero12_writer.h):
// ds_autoep_layers and param_shapes at the target ep, layer_{L}_expert_{E} files.
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "converters/plan/tree_edit.h"
#include "converters/sinks/zero/native_moe_experts.h"
#include "converters/sinks/zero/zero12_writer.h"
#include "converters/sinks/zero/zero_writers.h"
#include "formats/base/cast_source.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/file_names.h"
#include "formats/deepspeed/value_access.h"

namespace ucp::converters::sinks::internal_zero12 {

namespace keys = formats::deepspeed::keys;
namespace ids = formats::deepspeed;
using plan::CopyOp;
using plan::ExpertShape;
using plan::FileRole;
using plan::PlanSource;
using plan::Region;

absl::StatusOr<const Value*> Planner::AutoepLayers(const Value* layers, absl::string_view what) {
  // The model file is global rank 0's: EP rank 0, expert-DP rank 0.
  return plan::RewriteAutoepLayers(arena_, layers, ep_, edp_, 0, 0, what);
}

// param_shapes with the expert entries EP-local at the target ep (same pickled form as the
// source's).
absl::StatusOr<const Value*> Planner::ParamShapes(const Value* shapes, absl::string_view what) {
  if (ep_ == in_.topology.ep) return shapes;
  absl::flat_hash_map<std::string, ExpertShape> experts;
  for (const SinkParam& p : in_.params) {
    if (p.expert) experts[p.name] = ExpertShape{p.num_experts, p.shape};
  }
  return plan::RewriteExpertParamShapes(arena_, shapes, experts, ep_, what);
}

DType Planner::ModuleDtype(DType fallback) const {
  return internal_sink::ModuleDtype(in_, fallback);
}

absl::StatusOr<const Value*> Planner::ExpertRow(const SinkParam& p, uint64_t byte_offset,
                                                const Shape& shape, Plan* plan) {
  return internal_sink::ExpertRow(in_, arena_, frames_, p, byte_offset, shape, plan);
}

absl::Status Planner::NativeExpertFiles(Plan* plan) {
  if (!in_.native_expert_files.empty()) {  // from a ZeRO folder: they do not depend on dp
    for (const auto& [name, fi] : in_.native_expert_files) {
      const uint64_t size = in_.sources[fi]->Size();
      PlanFile f;
      f.path = name;
      f.role = FileRole::kModelCopy;
      f.size = size;
      Region r{0, size, {}};
      if (size > 0) r.ops.push_back(CopyOp{fi, 0, size, 0});
      f.regions.push_back(std::move(r));
      plan->files.push_back(std::move(f));
    }
    return absl::OkStatus();
  }
  std::vector<std::string> names;
  absl::flat_hash_map<std::string, const SinkParam*> by_name;
  for (const SinkParam& p : in_.params) {
    if (!p.expert) continue;
    names.push_back(p.name);
    by_name[p.name] = &p;
  }
  const std::string what = absl::StrCat(in_.origin, ": native MoE experts");
  UCP_ASSIGN_OR_RETURN(std::vector<NativeMoeLayer> layers,
                       NativeMoeLayers(names, in_.native_moe_num_experts, in_.topology.ep, what));
  for (size_t l = 0; l < layers.size(); ++l) {
    const NativeMoeLayer& layer = layers[l];
    for (int e = 0; e < layer.num_experts; ++e) {
      Value* root = arena_.Dict();
      for (const std::string& rest : layer.rests) {
        auto it = by_name.find(layer.LocalName(e % layer.num_local, rest));
        if (it == by_name.end()) {
          return absl::DataLossError(
              absl::StrCat(what, ": no '", layer.LocalName(e % layer.num_local, rest), "'"));
        }
        const SinkParam& p = *it->second;
        const int64_t numel = p.shape.NumElements().value_or(0);
        // Row (EP rank) e / num_local of the stacked [ep_size, ...] tensor.
        const uint64_t at =
            static_cast<uint64_t>((e / layer.num_local) * numel) * DTypeSize(p.states[0].dtype);
        UCP_ASSIGN_OR_RETURN(const Value* row, ExpertRow(p, at, p.shape, plan));
        arena_.SetItem(root, layer.GlobalName(e, rest), row);
      }
      UCP_ASSIGN_OR_RETURN(PlanFile f,
                           frames_.Frame(formats::deepspeed::ExpertModelStatesFileName(l, e, 0),
                                         FileRole::kModelRewrite, *root));
      plan->files.push_back(std::move(f));
    }
  }
  return absl::OkStatus();
}

absl::Status Planner::ExpertFiles(Plan* plan) {
  if (!in_.native_moe_num_experts.empty()) return NativeExpertFiles(plan);
  return internal_sink::AutoEpExpertFiles(in_, arena_, frames_, plan);
}

}  // namespace ucp::converters::sinks::internal_zero12

namespace ucp::converters::sinks::internal_sink {

namespace keys = formats::deepspeed::keys;
namespace ids = formats::deepspeed;
using formats::torch::TensorRef;
using formats::torch::ValueArena;
using formats::torch::ValueKind;
using plan::Piece;
using plan::Plan;
using plan::PlanFile;
using plan::PlanSource;

DType ModuleDtype(const ZeroSinkInput& in, DType fallback) {
  if (const Value* module = in.model_root->Get(keys::kModule);
      module != nullptr && module->is_dict()) {
    for (const auto& [k, v] : module->entries()) {
      if (v->is(ValueKind::kTensor)) return v->tensor().dtype;
    }
  }
  return fallback;
}

// A bf16/fp16 module is the masters cast as torch's copy_ does (round to nearest even), read
// lazily through a CastingSource plan source.
absl::StatusOr<const Value*> ExpertRow(const ZeroSinkInput& in, ValueArena& arena,
                                       plan::StorageFrames& frames, const SinkParam& p,
                                       uint64_t byte_offset, const Shape& shape, Plan* plan) {
  const DType master = p.states[0].dtype;
  const DType out = ModuleDtype(in, master);
  const int64_t numel = shape.NumElements().value_or(0);
  std::vector<Piece> pieces;
  UCP_RETURN_IF_ERROR(plan::SliceRuns(p.states[0], byte_offset,
                                      static_cast<uint64_t>(numel) * DTypeSize(master), in.origin,
                                      absl::StrCat("'", p.name, "'"), &pieces));
  if (out != master && numel > 0) {
    std::vector<CastInputRun> input;
    for (const Piece& piece : pieces) {
      input.push_back(CastInputRun{in.sources[piece.source], piece.source_offset, piece.length});
    }
    UCP_ASSIGN_OR_RETURN(std::shared_ptr<ByteSource> cast,
                         CastingSource(std::move(input), master, out, numel,
                                       absl::StrCat("<", p.name, " as ", DTypeName(out), ">")));
    const uint64_t size = cast->Size();
    plan->sources.push_back(PlanSource{cast->name(), size, std::move(cast)});
    pieces = {Piece{static_cast<int>(plan->sources.size()) - 1, 0, size}};
  }
  TensorRef t = frames.NewTensor(out, numel, numel, false, std::move(pieces))->tensor();
  t.shape = shape;
  t.stride = shape.ContiguousStrides();
  return arena.Tensor(std::move(t));
}

absl::Status AutoEpExpertFiles(const ZeroSinkInput& in, ValueArena& arena,
                               plan::StorageFrames& frames, Plan* plan) {
  const std::string what = absl::StrCat(in.origin, ": ", keys::kDsAutoepLayers);
  const Value* layers = in.model_root->Get(keys::kDsAutoepLayers);
  if (layers == nullptr || layers->is_none()) return absl::OkStatus();
  absl::flat_hash_map<std::string, const SinkParam*> by_name;
  for (const SinkParam& p : in.params) by_name[p.name] = &p;
  UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> items, ids::AsSequence(layers, what));
  for (const Value* item : items) {
    UCP_ASSIGN_OR_RETURN(const Value* d, ids::AsDict(item, what));
    UCP_ASSIGN_OR_RETURN(const Value* id_v, ids::Require(*d, keys::kMoeLayerId, what));
    UCP_ASSIGN_OR_RETURN(int64_t layer_id, ids::AsIntIn(id_v, 0, 1 << 20, what));
    UCP_ASSIGN_OR_RETURN(const Value* prefix_v, ids::Require(*d, keys::kExpertKeyPrefix, what));
    UCP_ASSIGN_OR_RETURN(std::string prefix, ids::AsStr(prefix_v, what));
    UCP_ASSIGN_OR_RETURN(const Value* n_v, ids::Require(*d, keys::kNumExperts, what));
    UCP_ASSIGN_OR_RETURN(int64_t num_experts, ids::AsIntIn(n_v, 1, 1 << 20, what));
    for (int64_t e = 0; e < num_experts; ++e) {
      Value* root = arena.Dict();
      for (absl::string_view w : keys::kAutoepFusedWeights) {
        const std::string name = absl::StrCat(prefix, ".", w);
        auto it = by_name.find(name);
        if (it == by_name.end() || !it->second->expert || it->second->num_experts != num_experts) {
          return absl::DataLossError(absl::StrCat(what, ": no expert parameter '", name, "' with ",
                                                  num_experts, " experts"));
        }
        const SinkParam& p = *it->second;
        Shape row;
        std::vector<int64_t> dims;
        for (int k = 1; k < p.shape.rank(); ++k) dims.push_back(p.shape.dim(k));
        row = Shape(dims);
        const int64_t row_numel = row.NumElements().value_or(0);
        const uint64_t at = static_cast<uint64_t>(e * row_numel) * DTypeSize(p.states[0].dtype);
        UCP_ASSIGN_OR_RETURN(const Value* t, ExpertRow(in, arena, frames, p, at, row, plan));
        arena.SetItem(root, absl::StrCat(name, ".", e), t);
      }
      UCP_ASSIGN_OR_RETURN(
          PlanFile f, frames.Frame(formats::deepspeed::ExpertModelStatesFileName(layer_id, e, 0),
                                   plan::FileRole::kModelRewrite, *root));
      plan->files.push_back(std::move(f));
    }
  }
  return absl::OkStatus();
}

}  // namespace ucp::converters::sinks::internal_sink
