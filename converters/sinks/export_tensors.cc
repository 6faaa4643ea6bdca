#include "converters/sinks/export_tensors.h"

#include <algorithm>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "converters/sources/expert_layouts.h"
#include "formats/base/cast_source.h"
#include "formats/base/status.h"
#include "formats/deepspeed/expert_names.h"

namespace ucp::converters::sinks {
namespace {

using ucp::ParamMeta;
using ucp::ParamRole;
using ucp::ParamState;

std::vector<Piece> Slice(const std::vector<Piece>& pieces, uint64_t offset, uint64_t length) {
  std::vector<Piece> out;
  uint64_t at = 0;
  for (const Piece& p : pieces) {
    const uint64_t begin = std::max(at, offset), end = std::min(at + p.size, offset + length);
    if (begin < end) out.push_back(Piece{p.source, p.offset + (begin - at), end - begin});
    at += p.size;
  }
  return out;
}

// Tensor `i` of `count` equal slices along dim 0 of `t`, with the remaining dims.
ExportTensor SliceDim0(const ExportTensor& t, int64_t i, int64_t count, std::string name) {
  const uint64_t per = count > 0 ? t.bytes / static_cast<uint64_t>(count) : 0;
  ExportTensor one;
  one.name = std::move(name);
  one.dtype = t.dtype;
  one.shape = Shape(std::vector<int64_t>(t.shape.dims().begin() + 1, t.shape.dims().end()));
  one.pieces = Slice(t.pieces, i * per, per);
  one.bytes = per;
  return one;
}

class Collector {
 public:
  Collector(const ucp::Source& source, const WeightsTarget& target) : src_(source), o_(target) {
    for (const auto& f : src_.files())
      out_.sources.push_back(plan::PlanSource{f->name(), f->Size(), nullptr});
  }
  absl::StatusOr<ExportTensors> Run();

 private:
  int AddSource(std::shared_ptr<const ByteSource> bytes) {
    out_.sources.push_back(plan::PlanSource{bytes->name(), bytes->Size(), std::move(bytes)});
    return static_cast<int>(out_.sources.size()) - 1;
  }
  absl::StatusOr<ExportTensor> Tensor(const ParamMeta& p, bool to_float);
  absl::Status AddExpert(const ParamMeta& p, ExportTensor t);
  absl::Status AddNativeExpert(const ParamMeta& p, const ExportTensor& t);
  absl::Status AddFusedPart(const std::string& prefix, const std::string& leaf, ExportTensor t);
  absl::Status AddAliases();

  const ucp::Source& src_;
  const WeightsTarget& o_;
  ExportTensors out_;
  std::vector<ExportTensor>& tensors_ = out_.tensors;
  std::map<std::string, std::pair<int, int>> fused_;  // AutoEP prefix → (w1, w3) tensor indices
  std::map<std::string, int> native_local_;  // native MoE layer prefix → local experts per EP rank
};

absl::StatusOr<ExportTensor> Collector::Tensor(const ParamMeta& p, bool to_float) {
  const auto& state = p.state(ParamState::kFp32);
  if (!state)
    return absl::NotFoundError(absl::StrCat(src_.info().path, ": '", p.name, "' has no weight"));
  ExportTensor t;
  t.name = p.name;
  t.shape = p.shape;
  DType target = state->dtype;
  if (to_float) target = DType::kF32;
  if (o_.dtype && IsCastableFloat(state->dtype)) target = *o_.dtype;
  UCP_ASSIGN_OR_RETURN(int64_t numel, p.shape.NumElements());
  if (target == state->dtype && (!state->runs.empty() || numel == 0)) {
    for (const ucp::ByteRun& r : state->runs) t.pieces.push_back(Piece{r.file, r.offset, r.size});
  } else if (numel > 0) {
    // The input bytes: the runs in the source's files, or the value the source computes.
    std::vector<CastInputRun> input;
    for (const ucp::ByteRun& r : state->runs)
      input.push_back(CastInputRun{src_.files()[r.file], r.offset, r.size});
    if (state->runs.empty()) {
      UCP_ASSIGN_OR_RETURN(Buffer bytes, src_.StateBytes(p, ParamState::kFp32));
      const uint64_t size = bytes.size();
      input.push_back(
          CastInputRun{MemorySource(std::move(bytes), absl::StrCat("<", p.name, ">")), 0, size});
    }
    std::shared_ptr<const ByteSource> out = input.back().source;
    if (target != state->dtype) {
      // Cast lazily, chunk by chunk as the executor reads: no whole cast copy in memory.
      UCP_ASSIGN_OR_RETURN(
          out, CastingSource(std::move(input), state->dtype, target, numel,
                             absl::StrCat("<", p.name, " as ", DTypeName(target), ">")));
    }
    t.pieces.push_back(Piece{AddSource(out), 0, out->Size()});
  }
  t.dtype = target;
  t.bytes = static_cast<uint64_t>(numel) * DTypeSize(target);
  return t;
}

// Native MoE: '<prefix>.deepspeed_experts.<local>.<rest>' stacks the EP ranks' local experts;
// written per global expert E = ep_rank * n_local + local, as a model without EP names them.
absl::Status Collector::AddNativeExpert(const ParamMeta& p, const ExportTensor& t) {
  const std::optional<formats::deepspeed::NativeExpertName> native =
      formats::deepspeed::ParseNativeExpertName(p.name);
  if (!native)
    return absl::DataLossError(
        absl::StrCat(src_.info().path, ": '", p.name, "' has no local expert id"));
  const int64_t ep = t.shape.dim(0);
  const int n_local = native_local_[native->prefix];
  for (int64_t r = 0; r < ep; ++r) {
    tensors_.push_back(SliceDim0(t, r, ep,
                                 formats::deepspeed::NativeExpertParamName(
                                     native->prefix, r * n_local + native->id, native->rest)));
  }
  return absl::OkStatus();
}

// AutoEP w1 / w3 → gate_up_proj [E, 2I, H]: per expert, w1's rows then w3's (once both are seen).
absl::Status Collector::AddFusedPart(const std::string& prefix, const std::string& leaf,
                                     ExportTensor t) {
  auto& slot = fused_[prefix];
  if (slot.first == 0 && slot.second == 0) slot = {-1, -1};
  tensors_.push_back(std::move(t));
  (leaf == "w1" ? slot.first : slot.second) = static_cast<int>(tensors_.size()) - 1;
  if (slot.first < 0 || slot.second < 0) return absl::OkStatus();
  const ExportTensor w1 = tensors_[slot.first], w3 = tensors_[slot.second];
  if (!(w1.shape == w3.shape) || w1.dtype != w3.dtype) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, ": w1 ", w1.shape.ToString(), " and w3 ",
                                                   w3.shape.ToString(),
                                                   " cannot fuse into gate_up_proj"));
  }
  const int64_t e = w1.shape.dim(0);
  const uint64_t per = e > 0 ? w1.bytes / static_cast<uint64_t>(e) : 0;
  ExportTensor fused;
  fused.name = prefix + ".gate_up_proj";
  fused.dtype = w1.dtype;
  fused.shape = Shape({e, 2 * w1.shape.dim(1), w1.shape.dim(2)});
  fused.bytes = 2 * w1.bytes;
  for (int64_t i = 0; i < e; ++i) {
    for (const ExportTensor* w : {&w1, &w3}) {
      for (const Piece& piece : Slice(w->pieces, i * per, per)) fused.pieces.push_back(piece);
    }
  }
  const int lo = std::min(slot.first, slot.second), hi = std::max(slot.first, slot.second);
  tensors_[hi].name.clear();  // dropped after collection (indices stay valid meanwhile)
  tensors_[lo] = std::move(fused);
  return absl::OkStatus();
}

// AutoEP fused experts (<prefix>.w1/w2/w3, [E, ...]) in the HF layout, or one tensor per expert.
absl::Status Collector::AddExpert(const ParamMeta& p, ExportTensor t) {
  if (formats::deepspeed::HasNativeExpertInfix(p.name) && t.shape.rank() >= 1)
    return AddNativeExpert(p, t);
  std::string prefix, leaf;
  const bool autoep =
      formats::deepspeed::ParseAutoepExpertName(p.name, &prefix, &leaf) && t.shape.rank() == 3;
  if (!autoep || o_.zero_to_fp32) {
    tensors_.push_back(std::move(t));
    return absl::OkStatus();
  }
  if (o_.moe_layout == MoeLayout::kPerExpert) {
    const int64_t e = t.shape.dim(0);
    for (int64_t i = 0; i < e; ++i)
      tensors_.push_back(SliceDim0(t, i, e, absl::StrCat(prefix, ".", i, ".", leaf)));
    return absl::OkStatus();
  }
  if (leaf == "w2") {
    t.name = prefix + ".down_proj";
    tensors_.push_back(std::move(t));
    return absl::OkStatus();
  }
  return AddFusedPart(prefix, leaf, std::move(t));
}

absl::Status Collector::AddAliases() {
  std::map<std::string, int> index_of;
  for (size_t i = 0; i < tensors_.size(); ++i) index_of[tensors_[i].name] = static_cast<int>(i);
  for (const ParamMeta& p : src_.params()) {
    if (p.tied_to.empty()) continue;
    auto it = index_of.find(p.tied_to);
    if (it == index_of.end()) continue;
    ExportTensor alias = tensors_[it->second];
    alias.name = p.name;
    alias.alias_of = it->second;
    tensors_.push_back(std::move(alias));
  }
  return absl::OkStatus();
}

absl::StatusOr<ExportTensors> Collector::Run() {
  // zero_to_fp32's order: buffers, frozen parameters, trainable parameters, tied aliases.
  const ParamRole order[] = {ParamRole::kBuffer, ParamRole::kFrozen, ParamRole::kTrainable};
  native_local_ = sources::NativeLocalExperts(src_);
  for (ParamRole role : order) {
    if (role == ParamRole::kFrozen && o_.exclude_frozen) continue;
    for (const ParamMeta& p : src_.params()) {
      if (p.role != role || !p.tied_to.empty()) continue;
      UCP_ASSIGN_OR_RETURN(ExportTensor t,
                           Tensor(p, o_.zero_to_fp32 && role == ParamRole::kBuffer));
      if (p.expert) {
        UCP_RETURN_IF_ERROR(AddExpert(p, std::move(t)));
      } else {
        tensors_.push_back(std::move(t));
      }
    }
  }
  std::erase_if(tensors_, [](const ExportTensor& t) { return t.name.empty(); });
  for (const auto& [prefix, slot] : fused_) {
    if (slot.first < 0 || slot.second < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, ": w1 or w3 missing; use --moe-layout per-expert"));
    }
  }
  UCP_RETURN_IF_ERROR(AddAliases());
  if (tensors_.empty())
    return absl::InvalidArgumentError(absl::StrCat(src_.info().path, ": no tensors to export"));
  return std::move(out_);
}

}  // namespace

std::optional<WeightsFormat> WeightsFormatFromName(absl::string_view name) {
  if (name == "safetensors") return WeightsFormat::kSafetensors;
  if (name == "bin") return WeightsFormat::kBin;
  if (name == "hdf5") return WeightsFormat::kHdf5;
  return std::nullopt;
}

std::optional<DType> WeightsDTypeFromName(absl::string_view name) {
  if (name == "fp32" || name == "f32") return DType::kF32;
  if (name == "fp16" || name == "f16") return DType::kF16;
  if (name == "bf16") return DType::kBF16;
  return std::nullopt;
}

std::optional<MoeLayout> MoeLayoutFromName(absl::string_view name) {
  if (name == "fused") return MoeLayout::kFused;
  if (name == "per-expert") return MoeLayout::kPerExpert;
  return std::nullopt;
}

absl::StatusOr<ExportTensors> CollectExportTensors(const ucp::Source& source,
                                                   const WeightsTarget& target) {
  return Collector(source, target).Run();
}

}  // namespace ucp::converters::sinks
