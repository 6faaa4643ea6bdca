// The tensors a weights export writes (`ucp export`, `ucp zero-to-fp32`; docs/export.md), from
// any Source: zero_to_fp32's order (buffers, frozen parameters, trainable parameters, tied
// aliases), names as a model without EP has them (native MoE experts per global expert; AutoEP
// experts fused as Hugging Face's gate_up_proj / down_proj, or one tensor per expert), each tensor
// as byte pieces of the plan's sources: the Source's files, or bytes computed lazily (dtype casts
// chunk by chunk, buffers' .float()). The weights sinks (weights_sink.h) lay these out in files.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "converters/plan/plan.h"
#include "formats/base/dtype.h"
#include "formats/base/shape.h"
#include "ucp/source.h"

namespace ucp::converters::sinks {

enum class WeightsFormat : uint8_t { kSafetensors, kBin, kHdf5 };
enum class MoeLayout : uint8_t {
  kFused,  // AutoEP: HF Transformers 5 experts.gate_up_proj [E, 2I, H] + experts.down_proj [E, H,
           // I]
  kPerExpert,  // experts.{i}.w1 / w2 / w3, one tensor per expert
};

// What a weights export writes.
struct WeightsTarget {
  WeightsFormat format = WeightsFormat::kSafetensors;
  std::optional<DType> dtype;   // cast floating tensors (fp32, bf16, fp16); none: as stored
  uint64_t max_shard_size = 0;  // bytes per shard (SI); 0: one file
  MoeLayout moe_layout = MoeLayout::kFused;
  bool exclude_frozen = false;
  // zero_to_fp32.py compatibility: its file names and metadata only ({"format": "pt"}), buffers
  // converted with .float(), experts as stored.
  bool zero_to_fp32 = false;
};

// The names `ucp export` and ucp.export take; nullopt for any other. Formats: safetensors, bin,
// hdf5. dtypes: formats/base/dtype.h's f32, bf16, f16, and fp32 / fp16 as people also type them.
// MoE layouts: fused, per-expert.
std::optional<WeightsFormat> WeightsFormatFromName(absl::string_view name);
std::optional<DType> WeightsDTypeFromName(absl::string_view name);
std::optional<MoeLayout> MoeLayoutFromName(absl::string_view name);

// A run of bytes of a plan source.
struct Piece {
  int source = -1;
  uint64_t offset = 0;
  uint64_t size = 0;
};

struct ExportTensor {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  std::vector<Piece> pieces;  // concatenated: the tensor's bytes
  uint64_t bytes = 0;
  int alias_of = -1;  // a tied alias: shares that tensor's storage (torch .bin)
};

struct ExportTensors {
  // sources[i] for i < Source::files().size() is the Source's file i; then computed bytes.
  std::vector<plan::PlanSource> sources;
  std::vector<ExportTensor> tensors;
};

// InvalidArgument for an unfusable AutoEP pair or nothing to export; NotFound for a parameter
// without a weight; the Source's read errors for computed bytes.
absl::StatusOr<ExportTensors> CollectExportTensors(const ucp::Source& source,
                                                   const WeightsTarget& target);

}  // namespace ucp::converters::sinks
