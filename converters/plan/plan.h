// Plan: everything a pipeline will write, computed from metadata only (zip directories and
// pickles), before any tensor byte is read (docs/architecture.md "One pipeline shape"). A plan is
// a list of output files; each file is either
//   * a torch.save file: a TorchFrame (pickle, zip framing; ucp/torch_frame.h) whose storage
//     payloads are filled by CopyOps from source files, or
//   * a byte copy of a source file (model-states files the UCP keeps as they are), or
//   * a file a format library writes (HDF5: chunking and compression decide its bytes): a
//     FileWriter the executor calls with the resolved sources, in the same staging folder and
//     manifest as every other file.
// The executor (converters/execute) runs the CopyOps and writers; everything else about the bytes
// is fixed here, so a plan is deterministic, printable (Summary, ToJson: `ucp convert --dry-run`)
// and can be unit-tested without touching tensor bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "formats/base/byte_source.h"
#include "nlohmann/json.hpp"
#include "ucp/torch_frame.h"

namespace ucp::converters::plan {

// Copy `length` bytes at `source_offset` of source `source` to `dest_offset` of the output file.
struct CopyOp {
  int source = -1;  // index into Plan::sources
  uint64_t source_offset = 0;
  uint64_t length = 0;
  uint64_t dest_offset = 0;  // absolute, in the output file
};

// A byte range of an output file filled from sources: one storage payload of a torch file, or a
// whole copied file. `ops` are sorted by dest_offset and tile [offset, offset + size) exactly.
struct Region {
  uint64_t offset = 0;
  uint64_t size = 0;
  std::vector<CopyOp> ops;
};

enum class FileRole : uint8_t {
  kParamState,      // zero/<param>/{fp32,exp_avg,exp_avg_sq}.pt
  kStep,            // zero/<param>/step.pt
  kOptimizerState,  // zero/optimizer_state.pt
  kModelCopy,       // a model-states file copied byte for byte
  kModelRewrite,    // a model-states file re-saved with changed keys (AutoEP)
  kWeights,         // an exported weights file (safetensors, .bin, HDF5) or its index
};
const char* FileRoleName(FileRole role);

// What a FileWriter gets from the executor.
struct WriterContext {
  std::string path;                             // the file to create (in the staging folder)
  absl::Span<const ByteSource* const> sources;  // Plan::sources, resolved
  // Reports `bytes` more written (progress); false once the run is cancelled: the writer then
  // stops and returns absl::CancelledError.
  std::function<bool(uint64_t bytes)> advance;
};
using FileWriter = std::function<absl::Status(const WriterContext&)>;

struct PlanFile {
  std::string path;  // relative to the output folder, '/'-separated
  FileRole role = FileRole::kParamState;
  // Exact for torch files and copies; for a writer's file the payload it will write (an
  // estimate: the manifest records the real size).
  uint64_t size = 0;
  // Torch files: the frame, with regions[i] filling frame->storages[i]. Copies: no frame and one
  // region covering the whole file. Written files: `writer`, no frame, no regions.
  std::optional<ucp::TorchFrame> frame;
  std::vector<Region> regions;
  FileWriter writer = nullptr;
};

// A torch file written as `frame` with `regions[i]` filling frame.storages[i]; size from the frame.
PlanFile FramedFile(std::string path, FileRole role, ucp::TorchFrame frame,
                    std::vector<Region> regions);

struct PlanSource {
  std::string path;
  uint64_t size = 0;
  // Bytes the planner computed (TP-averaged parameters, deepspeed-formats.md §5.2): served from
  // memory instead of a file; `path` then only names them ("<mean of ...>").
  std::shared_ptr<const ByteSource> memory = nullptr;
};

// What the planner found, for the summary and the JSON.
struct PlanInfo {
  std::string pipeline;  // "zero_to_ucp"
  std::string input;     // the tag folder read
  std::string wrapper;   // DeepSpeed optimizer wrapper
  int zero_stage = 0;
  int dp_size = 1, tp_size = 1, pp_size = 1, ep_size = 1;
  std::string master_dtype, state_dtype;
  int param_groups = 0;
  int params = 0;
  int expert_params = 0;
  int autoep_layers = 0;
  int frozen_params = 0;              // not part of a UCP (no optimizer state)
  std::vector<std::string> notes;     // e.g. patterns that matched no parameter with --no_strict
  std::vector<std::string> warnings;  // e.g. an exported tensor larger than --max-shard-size
};

struct Plan {
  PlanInfo info;
  std::vector<PlanSource> sources;
  std::vector<PlanFile> files;

  uint64_t TotalBytes() const;  // sum of file sizes
  uint64_t CopyBytes() const;   // bytes moved by CopyOps
  size_t NumOps() const;
  // Every folder the files need, relative, parents before children.
  std::vector<std::string> Directories() const;
};

// Appends `from`'s files to `into` (the plans of a tensor-parallel checkpoint's TP ranks). The
// first `shared` sources of both must be the same ByteSources in the same order; `from`'s other
// sources are appended to `into`'s and its copy operations renumbered. Internal otherwise.
absl::Status AppendPlan(Plan from, size_t shared, Plan* into);

// Internal error when the plan breaks its own invariants: a region that ops do not tile, regions
// outside their file or overlapping, a frame whose storages do not match the regions, a source
// range outside its source, duplicate or unsafe paths.
absl::Status ValidatePlan(const Plan& plan);

// A few lines for humans: detected stage/topology, parameter and file counts, bytes.
std::string Summary(const Plan& plan);
// The plan as JSON; with `with_ops` every CopyOp is listed (large).
nlohmann::json ToJson(const Plan& plan, bool with_ops = false);

}  // namespace ucp::converters::plan
