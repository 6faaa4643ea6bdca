#include "converters/deepspeed/checkpoint_index.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "converters/deepspeed/index_builder.h"
#include "formats/base/checked_math.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"

namespace ucp::converters::deepspeed {
using formats::torch::TensorRef;
using formats::torch::Value;
using formats::torch::ValueKind;
namespace keys = formats::deepspeed::keys;
using formats::deepspeed::AsDict;
using formats::deepspeed::AsSequence;
using formats::deepspeed::AsShape;
using formats::deepspeed::AsStr;
using formats::deepspeed::Describe;
using formats::deepspeed::IsSet;
using formats::deepspeed::Require;
using formats::deepspeed::ResolveCheckpointDir;

absl::string_view OptimizerWrapperName(OptimizerWrapper wrapper) {
  switch (wrapper) {
    case OptimizerWrapper::kZeroOptimizer: return "DeepSpeedZeroOptimizer";
    case OptimizerWrapper::kBf16Optimizer: return "BF16_Optimizer";
    case OptimizerWrapper::kZeroStage3: return "DeepSpeedZeroOptimizer_Stage3";
    case OptimizerWrapper::kTorchOptimizer: return "torch optimizer (no ZeRO)";
  }
  return "?";
}

absl::string_view StateName(StateKind state) {
  switch (state) {
    case StateKind::kFp32: return keys::kUcpFp32;
    case StateKind::kExpAvg: return keys::kUcpExpAvg;
    case StateKind::kExpAvgSq: return keys::kUcpExpAvgSq;
  }
  return "?";
}

int64_t Parameter::numel() const {
  int64_t n = 1;
  for (int64_t d : shape.dims()) n *= d;  // checked when the shape was read
  return n;
}

Shape Parameter::merged_shape() const {
  if (!expert.has_value()) return shape;
  std::vector<int64_t> dims(shape.dims().begin(), shape.dims().end());
  if (expert->stacked) {
    dims.insert(dims.begin(), expert->num_experts);
    return Shape(std::move(dims));
  }
  if (shape.rank() == 0) return shape;
  dims[0] = expert->num_experts;
  return Shape(std::move(dims));
}

const CheckpointFile& CheckpointIndex::optim_file(int dp_rank, int mp_rank) const {
  if (optim_files.empty()) return files[model_files[mp_rank]];
  return files[optim_files[mp_rank * topology.dp + dp_rank]];
}

const CheckpointFile& CheckpointIndex::model_file(int mp_rank, int dp_rank) const {
  if (kind.zero_stage == 3) return files[model_files[mp_rank * topology.dp + dp_rank]];
  return files[model_files[mp_rank]];
}

const Value& CheckpointIndex::optimizer_state_dict() const {
  if (kind.zero_stage == 0) return *model_file().root().Get(keys::kOptimizer);
  return *optim_file(0).root().Get(keys::kOptimizerStateDict);
}

const Value& CheckpointIndex::base_optimizer_state() const {
  const Value& osd = optimizer_state_dict();
  if (kind.zero_stage == 0) {  // FP16_UnfusedOptimizer nests the torch state
    const Value* inner = osd.Get(keys::kOptimizerStateDict);
    return inner != nullptr ? *inner : osd;
  }
  if (kind.zero_stage == 3) return *osd.Get(keys::kOptimizerStateDict);
  return *osd.Get(keys::kBaseOptimizerState);
}

const Parameter* CheckpointIndex::FindParam(absl::string_view name) const {
  auto it = param_by_name.find(name);
  return it == param_by_name.end() ? nullptr : &params[it->second];
}

namespace internal_ds {

std::string FileContext(const CheckpointIndex& index, int file) { return index.files[file].path; }

absl::StatusOr<std::vector<GroupShapes>> ReadParamShapes(const Value& model_root) {
  UCP_ASSIGN_OR_RETURN(const Value* list,
                       Require(model_root, keys::kParamShapes, keys::kParamShapes));
  UCP_ASSIGN_OR_RETURN(auto groups, AsSequence(list, keys::kParamShapes));
  std::vector<GroupShapes> out;
  absl::flat_hash_set<std::string> seen;
  for (size_t g = 0; g < groups.size(); ++g) {
    const std::string what = absl::StrCat(keys::kParamShapes, "[", g, "]");
    UCP_ASSIGN_OR_RETURN(const Value* dict, AsDict(groups[g], what));
    GroupShapes shapes;
    for (const auto& [k, v] : dict->entries()) {
      UCP_ASSIGN_OR_RETURN(std::string name, AsStr(k, absl::StrCat(what, " key")));
      UCP_ASSIGN_OR_RETURN(Shape shape, AsShape(v, absl::StrCat(what, "['", name, "']")));
      if (!seen.insert(name).second) {
        return absl::DataLossError(absl::StrCat(what, ": parameter '", name, "' listed twice"));
      }
      shapes.emplace_back(std::move(name), std::move(shape));
    }
    out.push_back(std::move(shapes));
  }
  return out;
}

absl::StatusOr<TensorLocation> Locate(const CheckpointIndex& index, int file,
                                      const TensorRef& tensor, int64_t start, int64_t numel,
                                      absl::string_view what) {
  const std::string ctx = absl::StrCat(FileContext(index, file), ": ", what);
  if (!tensor.IsContiguous())
    return absl::DataLossError(absl::StrCat(ctx, ": not a contiguous tensor"));
  const int64_t n = tensor.NumElements();
  if (start < 0 || numel < 0 || start > n || numel > n - start) {
    return absl::DataLossError(absl::StrCat(ctx, ": elements [", start, ", ", start + numel,
                                            ") lie outside the tensor's ", n));
  }
  const TorchFile& tf = *index.files[file].torch;
  TensorLocation loc;
  loc.file = file;
  loc.numel = numel;
  loc.dtype = tensor.dtype;
  loc.requires_grad = tensor.requires_grad;
  absl::StatusOr<const formats::zip::ZipEntry*> found = tf.StorageEntry(*tensor.storage);
  if (!found.ok()) return absl::DataLossError(absl::StrCat(ctx, ": ", found.status().message()));
  const formats::zip::ZipEntry* entry = *found;
  loc.record = entry->name;
  const uint64_t elem = DTypeSize(tensor.dtype);
  // storage_offset + start and numel are bounded by the tensor check above and TorchFile's view
  // check (every view lies inside its storage), so these products cannot overflow.
  loc.record_offset = static_cast<uint64_t>(tensor.storage_offset + start) * elem;
  if (!RangeInside(loc.record_offset, loc.num_bytes(), entry->size)) {
    return absl::DataLossError(absl::StrCat(ctx, ": elements run past record ", loc.record));
  }
  loc.file_offset = entry->data_offset + loc.record_offset;
  return loc;
}

absl::StatusOr<Fragment> PieceFragment(const CheckpointIndex& index, int file, int dp,
                                       const ucp::RankShard& rank, const ucp::ShardPiece& piece,
                                       const TensorRef* const (&tensors)[kNumStates],
                                       absl::string_view param_name) {
  Fragment f;
  f.dp_rank = dp;
  f.ep_rank = rank.ep_rank;
  f.partition_rank = rank.partition_rank;
  f.offset = piece.param_offset;
  f.merged_offset = piece.merged_offset;
  f.numel = piece.numel;
  for (int s = 0; s < kNumStates; ++s) {
    UCP_ASSIGN_OR_RETURN(f.states[s],
                         Locate(index, file, *tensors[s], piece.partition_offset, piece.numel,
                                absl::StrCat(StateName(kAllStates[s]), " of '", param_name, "'")));
  }
  return f;
}

absl::flat_hash_map<std::string, int> ExpertParamNames(const CheckpointIndex& index) {
  absl::flat_hash_map<std::string, int> out;
  for (int l = 0; l < static_cast<int>(index.autoep_layers.size()); ++l) {
    for (absl::string_view w : keys::kAutoepFusedWeights) {
      out.emplace(absl::StrCat(index.autoep_layers[l].expert_key_prefix, ".", w), l);
    }
  }
  return out;
}

absl::StatusOr<int64_t> AddCount(int64_t a, int64_t b, absl::string_view what) {
  std::optional<int64_t> sum = CheckedAdd(a, b);
  if (!sum.has_value() || *sum > kMaxTensorElements) {
    return absl::DataLossError(absl::StrCat(what, ": element count overflows"));
  }
  return *sum;
}

absl::StatusOr<Parameter> NewParam(const CheckpointIndex& index,
                                   const absl::flat_hash_map<std::string, int>& expert_names,
                                   const std::string& name, const Shape& shape, int param_group,
                                   int flat_group) {
  Parameter p;
  p.name = name;
  p.shape = shape;
  p.param_group = param_group;
  p.flat_group = flat_group;
  auto it = expert_names.find(name);
  if (it == expert_names.end()) return p;
  const AutoEpLayer& layer = index.autoep_layers[it->second];
  const std::string ctx = absl::StrCat(index.model_file().path, ": expert parameter '", name, "'");
  if (shape.rank() == 0 || shape.dim(0) != layer.num_local_experts) {
    return absl::DataLossError(absl::StrCat(ctx, " has shape ", shape.ToString(), ", expected ",
                                            layer.num_local_experts, " local experts in dim 0"));
  }
  p.expert = ExpertInfo{it->second, layer.num_experts, layer.num_local_experts};
  UCP_RETURN_IF_ERROR_CTX(p.merged_shape().NumElements().status(), ctx);
  return p;
}

absl::Status AddSlices(int mp, const std::vector<GroupShapes>& shapes, CheckpointIndex* index) {
  const std::string& path = index->model_file(mp).path;
  if (shapes.size() != index->flat_groups.size()) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": ", shapes.size(), " flat groups, ",
                                                      index->model_file().path, " has ",
                                                      index->flat_groups.size()));
  }
  for (size_t g = 0; g < shapes.size(); ++g) {
    const FlatGroup& fg = index->flat_groups[g];
    if (shapes[g].size() != fg.params.size()) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": ", keys::kParamShapes, "[", g, "] differs from mp rank 0"));
    }
    for (size_t i = 0; i < shapes[g].size(); ++i) {
      Parameter& p = index->params[fg.params[i]];
      if (shapes[g][i].first != p.name) {
        return absl::FailedPreconditionError(
            absl::StrCat(path, ": ", keys::kParamShapes, "[", g, "] lists '", shapes[g][i].first,
                         "' where mp rank 0 lists '", p.name, "'"));
      }
      p.slices.push_back(ParamSlice{mp, shapes[g][i].second, {}});
    }
  }
  return absl::OkStatus();
}

namespace {

absl::StatusOr<std::string> ScalarBytes(const CheckpointIndex& index, int file, const Value* v) {
  const TensorRef& t = v->tensor();
  if (t.NumElements() != 1) {
    return absl::DataLossError(
        absl::StrCat(FileContext(index, file), ": step is a tensor of shape ", t.shape.ToString()));
  }
  UCP_ASSIGN_OR_RETURN(Buffer bytes, index.files[file].torch->TensorBytes(t));
  return std::string(bytes.AsStringView());
}

std::string ScalarText(const Value* v, const std::string& bytes) {
  return absl::StrCat(
      ElementAsDouble(v->tensor().dtype, reinterpret_cast<const std::byte*>(bytes.data())));
}

}  // namespace

absl::Status CheckSameStep(const CheckpointIndex& index, int file, const Value* step,
                           int reference_file, const Value* reference, absl::string_view what) {
  auto mismatch = [&]() {
    return absl::FailedPreconditionError(absl::StrCat(
        "ranks disagree on ", what, ": ", FileContext(index, file), " has ", Describe(step), ", ",
        FileContext(index, reference_file), " has ", Describe(reference)));
  };
  if ((step == nullptr) != (reference == nullptr)) return mismatch();
  if (step == nullptr) return absl::OkStatus();
  if (step->kind() != reference->kind()) return mismatch();
  switch (step->kind()) {
    case ValueKind::kInt:
      return step->int_value() == reference->int_value() ? absl::OkStatus() : mismatch();
    case ValueKind::kFloat:
      return step->float_value() == reference->float_value() ? absl::OkStatus() : mismatch();
    case ValueKind::kTensor: {
      if (step->tensor().dtype != reference->tensor().dtype ||
          !(step->tensor().shape == reference->tensor().shape)) {
        return mismatch();
      }
      UCP_ASSIGN_OR_RETURN(std::string a, ScalarBytes(index, file, step));
      UCP_ASSIGN_OR_RETURN(std::string b, ScalarBytes(index, reference_file, reference));
      if (a != b) {
        return absl::FailedPreconditionError(
            absl::StrCat("ranks disagree on ", what, ": ", FileContext(index, file), " has ",
                         ScalarText(step, a), ", ", FileContext(index, reference_file), " has ",
                         ScalarText(reference, b)));
      }
      return absl::OkStatus();
    }
    default:
      return absl::DataLossError(
          absl::StrCat(FileContext(index, file), ": ", what, " is a ", Describe(step)));
  }
}

namespace {

// Settings of ds_config this index cannot describe.
absl::Status CheckConfig(const CheckpointIndex& index) {
  const CheckpointFile& model = index.model_file();
  for (const CheckpointFile& f : index.files) {
    if (IsSet(f.root().Get(keys::kFolding))) {
      return absl::UnimplementedError(absl::StrCat(f.path, ": folded AutoEP+AutoTP checkpoints ('",
                                                   keys::kFolding, "') are not supported"));
    }
  }
  const Value* config = model.root().Get(keys::kDsConfig);
  const Value* zero = config != nullptr ? config->Get(keys::kZeroOptimization) : nullptr;
  if (zero == nullptr || !zero->is_dict()) return absl::OkStatus();
  const Value* round_robin = zero->Get(keys::kRoundRobinGradients);
  if (round_robin != nullptr && round_robin->is(ValueKind::kBool) && round_robin->bool_value()) {
    return absl::UnimplementedError(
        absl::StrCat(model.path, ": ", keys::kDsConfig, ".", keys::kZeroOptimization, ".",
                     keys::kRoundRobinGradients,
                     " is set; its param_slice_mappings do not describe the flat layout"));
  }
  const Value* mics = zero->Get(keys::kMicsShardSize);
  if (mics != nullptr && mics->is(ValueKind::kInt) && mics->int_value() > 0) {
    return absl::UnimplementedError(absl::StrCat(model.path, ": MiCS (zero_optimization.",
                                                 keys::kMicsShardSize,
                                                 ") checkpoints are not supported"));
  }
  return absl::OkStatus();
}

// Every slice's fragments, sorted, must tile each EP rank's tensor exactly.
absl::Status CheckTiling(const CheckpointIndex& index, Parameter& p) {
  const int ep_count = p.is_expert() ? index.topology.ep : 1;
  for (ParamSlice& slice : p.slices) {
    std::sort(
        slice.fragments.begin(), slice.fragments.end(),
        [](const Fragment& a, const Fragment& b) { return a.merged_offset < b.merged_offset; });
    int64_t local = 1;
    for (int64_t d : slice.shape.dims()) local *= d;
    size_t i = 0;
    for (int ep = 0; ep < ep_count; ++ep) {
      int64_t next = 0;
      for (; i < slice.fragments.size() && slice.fragments[i].ep_rank == ep; ++i) {
        const Fragment& f = slice.fragments[i];
        if (f.offset != next) {
          return absl::DataLossError(absl::StrCat(
              "parameter '", p.name, "' (mp rank ", slice.mp_rank, ", ep rank ", ep,
              "): the fragment of dp rank ", f.dp_rank, " starts at element ", f.offset,
              ", expected ", next,
              next < f.offset ? " (a rank's piece is missing)" : " (overlapping fragments)"));
        }
        next += f.numel;
      }
      if (next != local) {
        return absl::DataLossError(absl::StrCat("parameter '", p.name, "' (mp rank ", slice.mp_rank,
                                                ", ep rank ", ep, "): fragments cover ", next,
                                                " of ", local, " elements"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status FinishParams(CheckpointIndex* index) {
  for (int i = 0; i < static_cast<int>(index->params.size()); ++i) {
    Parameter& p = index->params[i];
    if (!index->param_by_name.emplace(p.name, i).second) {
      return absl::DataLossError(absl::StrCat("parameter '", p.name, "' appears in two groups"));
    }
    if (static_cast<int>(p.slices.size()) != index->topology.mp()) {
      return absl::FailedPreconditionError(absl::StrCat("parameter '", p.name, "' is on ",
                                                        p.slices.size(), " of ",
                                                        index->topology.mp(), " mp ranks"));
    }
    UCP_RETURN_IF_ERROR(CheckTiling(*index, p));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace internal_ds

absl::StatusOr<CheckpointIndex> OpenCheckpoint(const std::string& dir, const OpenOptions& options) {
  CheckpointIndex index;
  UCP_ASSIGN_OR_RETURN(index.dir, ResolveCheckpointDir(dir, options.tag));
  UCP_RETURN_IF_ERROR(internal_ds::LoadFiles(options, &index));
  UCP_RETURN_IF_ERROR(internal_ds::CheckConfig(index));
  UCP_RETURN_IF_ERROR(internal_ds::ReadAutoEp(&index));
  UCP_RETURN_IF_ERROR(internal_ds::ReadUniversalCheckpointInfo(&index));
  if (index.kind.zero_stage == 0) {
    UCP_RETURN_IF_ERROR(internal_ds::IndexZero0(&index));
  } else if (index.kind.zero_stage == 3) {
    UCP_RETURN_IF_ERROR(internal_ds::IndexZero3(&index));
  } else {
    UCP_RETURN_IF_ERROR(internal_ds::IndexZero12(&index));
  }
  UCP_RETURN_IF_ERROR(internal_ds::FinishParams(&index));
  UCP_RETURN_IF_ERROR(internal_ds::ReadModelExtras(&index));
  UCP_RETURN_IF_ERROR(internal_ds::CheckModelAgainstShards(index));
  return index;
}

}  // namespace ucp::converters::deepspeed
