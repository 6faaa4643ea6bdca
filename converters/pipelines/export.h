// The export pipeline (`ucp export`, `ucp zero-to-fp32`; docs/export.md): any checkpoint (ZeRO
// folder read in place, UCP, weights) → the `load_module_only` weights as safetensors, torch .bin
// or HDF5:
//   OpenSource (metadata) → WeightsSink / Hdf5Sink (converters/sinks/weights_sink.h: the tensor
//   list in zero_to_fp32's order, shards, HF names and index, as a Plan) → RunPlan (output guard,
//   staging, execute, manifest, rename).
// dtype casts (--dtype) and buffers' .float() are computed lazily per chunk.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "converters/execute/executor.h"
#include "converters/sinks/export_tensors.h"

namespace ucp::converters::pipelines {

using ExportFormat = sinks::WeightsFormat;
using MoeLayout = sinks::MoeLayout;

// The target (format, dtype, shards, MoE layout, ...) and where to read and write.
struct ExportOptions : sinks::WeightsTarget {
  std::string input;
  std::string output;  // folder to create
  std::string tag;     // ZeRO input: tag folder instead of `latest`
  bool force = false;
  bool dry_run = false;
  execute::ExecuteOptions execute;
};

struct ExportResult {
  std::string output;
  std::string staging;                 // the staging folder it went through (gone now)
  bool removed_stale_partial = false;  // a dead run's staging folder was removed first
  std::vector<std::string> files;      // relative names, shards in order (+ index json)
  size_t tensors = 0;
  uint64_t bytes = 0;  // written: the files' sizes; dry run: the plan's (HDF5: tensor payloads)
  execute::ExecuteStats stats;
  std::string source_kind;
  std::optional<int64_t> step;
  std::vector<std::string> notes;     // e.g. everything fits one shard (no index)
  std::vector<std::string> warnings;  // e.g. a tensor larger than max_shard_size
};

// Errors: the source's (naming its file), InvalidArgument for an unsupported cast or layout or an
// output that overlaps the input, the output guard's (AlreadyExists without force, ...),
// Cancelled; nothing is left at the output on error.
absl::StatusOr<ExportResult> Export(const ExportOptions& options);

}  // namespace ucp::converters::pipelines
