// `ucp export SRC --out DIR` and `ucp zero-to-fp32 CHECKPOINT_DIR OUTPUT_DIR` (zero_to_fp32.py's
// arguments): converters/pipelines/export.h behind the CLI. 0 ok, 1 error (one "error:" line),
// 2 a bad --format / --dtype / --moe-layout / size, 130 / 143 when interrupted by SIGINT / SIGTERM.
// Notes (one shard, no index) and warnings (a tensor larger than --max-shard-size) go to stderr.
#pragma once

#include <optional>
#include <ostream>
#include <string>

#include "absl/strings/string_view.h"
#include "converters/pipelines/export.h"
#include "formats/base/dtype.h"

namespace ucp::cli {

// The values --format, --dtype and --moe-layout take. --dtype names are formats/base/dtype.h's
// (f32, bf16, f16), and fp32 / fp16 as people also type them.
inline constexpr absl::string_view kExportFormats[] = {"safetensors", "bin", "hdf5"};
inline constexpr absl::string_view kExportDTypes[] = {"f32", "bf16", "f16", "fp32", "fp16"};
inline constexpr absl::string_view kMoeLayouts[] = {"fused", "per-expert"};
// The DType a --dtype value names; nullopt when it is not one of kExportDTypes.
std::optional<DType> ExportDType(absl::string_view name);

struct ExportCommandOptions {
  std::string input, output, tag;
  std::string format = "safetensors";  // safetensors | bin | hdf5
  std::string dtype;                   // "", fp32, bf16, fp16
  std::string max_shard_size;          // "" = one file
  std::string moe_layout = "fused";    // fused | per-expert
  bool exclude_frozen = false;
  bool zero_to_fp32 = false;
  bool safe_serialization = false;  // zero-to-fp32: safetensors instead of .bin
  bool json = false, dry_run = false, force = false, no_fsync = false;
  bool distributed = false;  // one rank of a torchrun / srun / mpirun job
  int nproc = 0;             // > 0: launch this many local ranks (main.cc, launch_ranks.h)
  bool debug = false;        // zero-to-fp32 -d: accepted, no effect
  int threads = 0;
  bool progress = false;  // draw a progress line on `err` (main sets it when stderr is a TTY)
};

int RunExport(const ExportCommandOptions& options, std::ostream& out, std::ostream& err);

}  // namespace ucp::cli
