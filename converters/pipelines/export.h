// The export pipeline (`ucp export`, `ucp zero-to-fp32`; docs/export.md): any checkpoint (ZeRO folder
// read in place, UCP, weights) → the `load_module_only` weights as safetensors, torch .bin or HDF5:
//   OpenSource (metadata) → the tensor list (zero_to_fp32's order: buffers, frozen, trainable, tied
//   aliases) → shards (greedy in key order, SI sizes, HF names and index) → a Plan whose CopyOps
//   copy the Source's byte runs into safetensors / torch.save frames → ExecutePlan into
//   <out>.partial/ → manifest → rename. HDF5 is written tensor by tensor through libhdf5.
// dtype casts (--dtype) and buffers' .float() are computed per tensor into memory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "converters/execute/executor.h"
#include "formats/base/dtype.h"

namespace ucp::converters::pipelines {

enum class ExportFormat : uint8_t { kSafetensors, kBin, kHdf5 };
enum class MoeLayout : uint8_t {
  kFused,      // AutoEP: HF Transformers 5 experts.gate_up_proj [E, 2I, H] + experts.down_proj [E, H, I]
  kPerExpert,  // experts.{i}.w1 / w2 / w3, one tensor per expert
};

struct ExportOptions {
  std::string input;
  std::string output;  // folder to create
  std::string tag;     // ZeRO input: tag folder instead of `latest`
  ExportFormat format = ExportFormat::kSafetensors;
  std::optional<DType> dtype;  // cast floating tensors (fp32, bf16, fp16); none: as stored
  uint64_t max_shard_size = 0; // bytes per shard (SI); 0: one file
  MoeLayout moe_layout = MoeLayout::kFused;
  bool exclude_frozen = false;
  // zero_to_fp32.py compatibility: its file names and metadata only ({"format": "pt"}), buffers
  // converted with .float(), experts as stored.
  bool zero_to_fp32 = false;
  bool force = false;
  bool dry_run = false;
  execute::ExecuteOptions execute;
};

struct ExportResult {
  std::string output;
  std::vector<std::string> files;  // relative names, shards in order (+ index json)
  size_t tensors = 0;
  uint64_t bytes = 0;
  execute::ExecuteStats stats;
  std::string source_kind;
  std::optional<int64_t> step;
};

// Errors: the source's (naming its file), InvalidArgument for an unsupported cast or layout,
// AlreadyExists for an existing output without force; nothing is left at the output on error.
absl::StatusOr<ExportResult> Export(const ExportOptions& options);


}  // namespace ucp::converters::pipelines
