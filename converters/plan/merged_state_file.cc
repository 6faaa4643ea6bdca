#include "converters/plan/merged_state_file.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/deepspeed/gather.h"
#include "formats/base/byte_source.h"
#include "formats/base/status.h"
#include "ucp/torch_frame.h"

namespace ucp::converters::plan::internal_plan {

using deepspeed::CheckpointIndex;
using deepspeed::Fragment;
using deepspeed::Parameter;
using deepspeed::StateKind;
using formats::torch::Value;
using formats::torch::ValueArena;

namespace {

// deepspeed.checkpoint.universal_checkpoint.SubparamShape (deepspeed-formats.md §2.6).
constexpr char kSubparamShapeModule[] = "deepspeed.checkpoint.universal_checkpoint";
constexpr char kSubparamShapeClass[] = "SubparamShape";

// Shapes reach the planner checked by OpenCheckpoint.
int64_t Numel(const Shape& s) { return s.NumElements().value_or(0); }

// DataLoss unless the slice's fragments tile [0, numel) in order.
absl::Status CheckTiling(const CheckpointIndex& index, const Parameter& p, int mp) {
  int64_t expected = 0;
  for (const Fragment& f : p.slices[mp].fragments) {
    if (f.numel == 0) continue;
    if (f.offset != expected) {
      return absl::DataLossError(absl::StrCat(index.files[f.states[0].file].path, ": fragment of '",
                                              p.name, "' (mp rank ", mp, ") at element ", f.offset,
                                              " leaves a gap or overlap at ", expected));
    }
    expected += f.numel;
  }
  if (expected != Numel(p.slices[mp].shape)) {
    return absl::DataLossError(absl::StrCat("fragments of '", p.name, "' (mp rank ", mp, ") hold ",
                                            expected, " elements of ", Numel(p.slices[mp].shape)));
  }
  return absl::OkStatus();
}

// CopyOps moving `run` of its slice's state to the merged tensor at the region's start.
void AddRunOps(const Parameter& p, StateKind state, const ucp::TpRun& run, uint64_t elem,
               Region* region) {
  for (const TpRunPiece& piece : TpRunPieces(p, state, run, elem)) {
    region->ops.push_back(
        CopyOp{piece.file, piece.file_offset, piece.bytes,
               region->offset + static_cast<uint64_t>(piece.merged_offset) * elem});
  }
}

// Replicated and averaged parameters read their slices' bytes here (they are small, e.g. norms):
// replicated slices must be equal as torch.equal says (DeepSpeed asserts it); averaged ones
// become sum(slices) / tp exactly as Python evaluates it: ((0 + s0) + s1 + ...) / tp, in the
// state's dtype (f32 or f64), so -0.0 turns into +0.0 as in DeepSpeed.
template <typename T>
std::vector<std::byte> MeanOf(const std::vector<Buffer>& slices) {
  const size_t n = slices[0].size() / sizeof(T);
  std::vector<std::byte> out(n * sizeof(T));
  for (size_t i = 0; i < n; ++i) {
    T acc = 0;
    for (const Buffer& b : slices) {
      T v;
      std::memcpy(&v, b.data() + i * sizeof(T), sizeof(T));
      acc = acc + v;
    }
    acc = acc / static_cast<T>(slices.size());
    std::memcpy(out.data() + i * sizeof(T), &acc, sizeof(T));
  }
  return out;
}

template <typename T>
bool ValuesEqual(const Buffer& a, const Buffer& b) {
  for (size_t i = 0; i + sizeof(T) <= a.size(); i += sizeof(T)) {
    T x, y;
    std::memcpy(&x, a.data() + i, sizeof(T));
    std::memcpy(&y, b.data() + i, sizeof(T));
    if (!(x == y)) return false;
  }
  return true;
}

absl::StatusOr<std::vector<Buffer>> ReadSlices(const CheckpointIndex& index, const Parameter& p,
                                               StateKind state, int tp) {
  std::vector<Buffer> out;
  for (int mp = 0; mp < tp; ++mp) {
    UCP_ASSIGN_OR_RETURN(Buffer b, deepspeed::GatherState(index, p, state, mp));
    if (!out.empty() && b.size() != out.front().size()) {
      return absl::FailedPreconditionError(
          absl::StrCat("TP slices of '", p.name, "' have different sizes"));
    }
    out.push_back(std::move(b));
  }
  return out;
}

absl::Status CheckReplicated(const CheckpointIndex& index, const Parameter& p, StateKind state,
                             DType dtype, int tp) {
  UCP_ASSIGN_OR_RETURN(std::vector<Buffer> slices, ReadSlices(index, p, state, tp));
  for (int mp = 1; mp < tp; ++mp) {
    const bool equal = dtype == DType::kF32 ? ValuesEqual<float>(slices[0], slices[mp])
                       : dtype == DType::kF64
                           ? ValuesEqual<double>(slices[0], slices[mp])
                           : slices[0].AsStringView() == slices[mp].AsStringView();
    if (!equal) {
      return absl::FailedPreconditionError(
          absl::StrCat(index.model_file(mp).path, ": tp-replicated parameter '", p.name,
                       "' differs from mp rank 0 in ", deepspeed::StateName(state)));
    }
  }
  return absl::OkStatus();
}

// Appends the mean of the slices to plan->sources; returns its index.
absl::StatusOr<int> AddMeanSource(const CheckpointIndex& index, const Parameter& p, StateKind state,
                                  DType dtype, const std::string& path, Plan* plan) {
  absl::StatusOr<std::vector<std::byte>> mean = MeanOfTpSlices(index, p, state, dtype);
  if (!mean.ok()) return WithContext(mean.status(), path);
  const uint64_t size = mean->size();
  const std::string name = absl::StrCat("<mean of ", p.slices.size(), " TP slices: ", path, ">");
  plan->sources.push_back(
      PlanSource{name, size, MemorySource(Buffer::FromVector(*std::move(mean)), name)});
  return static_cast<int>(plan->sources.size()) - 1;
}

}  // namespace

absl::Status StateDtype(const CheckpointIndex& index, const Parameter& p, StateKind state,
                        int num_slices, const std::string& path, DType* dtype,
                        bool* requires_grad) {
  std::optional<DType> found;
  *requires_grad = false;
  for (int mp = 0; mp < num_slices; ++mp) {
    for (const Fragment& f : p.slices[mp].fragments) {
      const deepspeed::TensorLocation& loc = f.state(state);
      if (found && *found != loc.dtype) {
        return absl::FailedPreconditionError(
            absl::StrCat(index.files[loc.file].path, ": ", path, ": fragments of '", p.name,
                         "' mix ", DTypeName(*found), " and ", DTypeName(loc.dtype)));
      }
      found = loc.dtype;
      *requires_grad = *requires_grad || loc.requires_grad;
    }
  }
  if (!found) {  // an empty parameter: DeepSpeed's flat fp32 partitions require grad, moments do
                 // not
    found = state == StateKind::kFp32 ? index.kind.master_dtype : index.kind.state_dtype;
    *requires_grad = state == StateKind::kFp32;
  }
  *dtype = *found;
  return absl::OkStatus();
}

std::vector<TpRunPiece> TpRunPieces(const Parameter& p, StateKind state, const ucp::TpRun& run,
                                    uint64_t elem) {
  std::vector<TpRunPiece> out;
  for (const Fragment& f : p.slices[run.rank].fragments) {
    const int64_t lo = std::max(run.rank_offset, f.offset);
    const int64_t hi = std::min(run.rank_offset + run.numel, f.offset + f.numel);
    if (lo >= hi) continue;
    const deepspeed::TensorLocation& loc = f.state(state);
    out.push_back(TpRunPiece{
        loc.file, loc.file_offset + static_cast<uint64_t>(lo - f.offset) * elem,
        static_cast<uint64_t>(hi - lo) * elem, run.merged_offset + lo - run.rank_offset});
  }
  return out;
}

absl::StatusOr<std::vector<std::byte>> MeanOfTpSlices(const CheckpointIndex& index,
                                                      const Parameter& p, StateKind state,
                                                      DType dtype) {
  if (dtype != DType::kF32 && dtype != DType::kF64) {
    return absl::UnimplementedError(absl::StrCat("averaging the TP slices of '", p.name, "' in ",
                                                 DTypeName(dtype), " is not implemented"));
  }
  UCP_ASSIGN_OR_RETURN(std::vector<Buffer> slices,
                       ReadSlices(index, p, state, static_cast<int>(p.slices.size())));
  return dtype == DType::kF32 ? MeanOf<float>(slices) : MeanOf<double>(slices);
}

// zero/<param>/<state>.pt of a ZeRO-1/2 dense parameter: its TP slices merged as `keys` say.
absl::StatusOr<PlanFile> MergedStateFile(const CheckpointIndex& index, const Parameter& p,
                                         StateKind state, ucp::ParamStateSpec spec,
                                         const ParamKeys& keys, ValueArena& arena, Plan* plan) {
  const int tp = static_cast<int>(p.slices.size());
  const std::string path = ucp::ParamStatePath(p.name, deepspeed::StateName(state));
  const ucp::TpMergeKind kind = keys.layout.cut.kind;
  // Replicated: DeepSpeed keeps slice 0's tensor (and its requires_grad).
  UCP_RETURN_IF_ERROR(StateDtype(index, p, state, kind == ucp::TpMergeKind::kReplicated ? 1 : tp,
                                 path, &spec.dtype, &spec.requires_grad));
  for (int mp = 0; mp < tp; ++mp) UCP_RETURN_IF_ERROR(CheckTiling(index, p, mp));
  UCP_ASSIGN_OR_RETURN(ucp::ParamStateTree tree, ucp::BuildParamStateTree(arena, spec));
  UCP_ASSIGN_OR_RETURN(ucp::TorchFrame frame,
                       ucp::FrameTorchFile(ucp::ArchiveRootFor(path), *tree.root, nullptr));
  const uint64_t elem = DTypeSize(spec.dtype);
  Region region{frame.storages[0].payload_offset, frame.storages[0].size, {}};
  if (kind == ucp::TpMergeKind::kAverage) {
    UCP_ASSIGN_OR_RETURN(int source, AddMeanSource(index, p, state, spec.dtype, path, plan));
    if (region.size > 0) region.ops.push_back(CopyOp{source, 0, region.size, region.offset});
  } else {
    if (kind == ucp::TpMergeKind::kReplicated && tp > 1) {
      UCP_RETURN_IF_ERROR(CheckReplicated(index, p, state, spec.dtype, tp));
    }
    for (const ucp::TpRun& run : keys.layout.runs) AddRunOps(p, state, run, elem, &region);
  }
  std::vector<Region> regions;
  regions.push_back(std::move(region));
  return FramedFile(path, FileRole::kParamState, std::move(frame), std::move(regions));
}

// The dict spec of a ZeRO-1/2 dense parameter (dtype and requires_grad are set per state).
ucp::ParamStateSpec DictSpec(const ParamKeys& k, ValueArena& arena) {
  ucp::ParamStateSpec spec;
  spec.form = ucp::ParamFileForm::kDict;
  spec.shape = k.shape;
  spec.storage_numel = Numel(k.layout.merged);
  spec.cat_dim = k.cat_dim;
  spec.n_sub_params = k.n_sub_params;
  spec.vocab_tensor = k.vocab_tensor;
  if (k.is_sub_params()) {
    // DeepSpeed's SubparamShape dataclass: NEWOBJ + BUILD {patterns, shape, partition_dim}.
    const Value* shape = k.sub_param_shape;
    if (k.legacy_sub_param_sizes) {  // shape[partition_dim] becomes the tuple of sizes
      std::vector<const Value*> sizes, items;
      for (int64_t s : *k.legacy_sub_param_sizes) sizes.push_back(arena.Int(s));
      for (size_t d = 0; d < shape->items().size(); ++d) {
        items.push_back(static_cast<int64_t>(d) == k.sub_param_partition_dim ? arena.Tuple(sizes)
                                                                             : shape->items()[d]);
      }
      shape = arena.Tuple(items);
    }
    Value* obj = arena.Object(arena.Global(kSubparamShapeModule, kSubparamShapeClass),
                              arena.Tuple(), Value::Construction::kNewObj);
    Value* state = arena.Dict();
    arena.SetItem(state, "patterns", k.sub_param_patterns);
    arena.SetItem(state, "shape", shape);
    arena.SetItem(state, "partition_dim", arena.Int(k.sub_param_partition_dim));
    ValueArena::SetState(obj, state);
    spec.sub_param_shape = obj;
  }
  return spec;
}

}  // namespace ucp::converters::plan::internal_plan
