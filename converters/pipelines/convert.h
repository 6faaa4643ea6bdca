// The convert pipeline: DeepSpeed ZeRO checkpoint → Universal Checkpoint folder identical to the
// one DeepSpeed's ds_to_universal.py writes (docs/ucp.md), as
//   OpenCheckpoint (Source: metadata only) → UcpFolderSink (PlanZeroToUcp, pure) → RunPlan
//   (output guard, staging, execute with bounded memory, manifest, rename to <out>) →
//   <parent>/latest_universal.
// Input is fully opened and planned before anything is created at the output, so bad input leaves
// nothing behind; a failure or SIGINT/SIGTERM during execution leaves nothing, a kill -9 at most
// the staging folder, which the next run removes (ucp/staging_dir.h).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/execute/executor.h"
#include "converters/plan/plan.h"
#include "converters/sinks/ucp/zero_to_ucp.h"

namespace ucp::converters::pipelines {

struct ConvertOptions {
  std::string input;   // a save folder (its `latest` names the tag) or a tag folder
  std::string output;  // the UCP folder; empty: <save folder>/<tag>_universal
  std::string tag;     // the tag folder to read under `input` instead of `latest`
  sinks::ZeroToUcpOptions plan;
  execute::ExecuteOptions execute;
  bool force = false;        // replace an existing output folder
  bool write_latest = true;  // write <parent of output>/latest_universal
};

// A planned conversion. The plan's sources are the index's files, so both travel together.
struct PlannedConvert {
  deepspeed::CheckpointIndex index;
  plan::Plan plan;
  std::string output;  // resolved output folder
};

struct ConvertResult {
  std::string output;
  std::string latest_universal;  // path written, empty when not
  std::string staging;           // the staging folder it went through (gone now)
  bool removed_stale_partial = false;
  plan::PlanInfo info;
  size_t files = 0;
  uint64_t bytes = 0;  // all files written, manifest excluded
  execute::ExecuteStats stats;
};

// <save folder>/<tag>_universal, the name DeepSpeed's examples use.
std::string DefaultOutput(const formats::deepspeed::CheckpointDir& dir);

// Opens and plans; touches nothing at the output. Errors from OpenCheckpoint and PlanZeroToUcp
// (each names its file), InvalidArgument when the output overlaps the input (ucp/output_guard.h).
absl::StatusOr<PlannedConvert> PlanConvert(const ConvertOptions& options);

// PlanConvert, then writes the UCP. Also AlreadyExists (output exists, no force),
// FailedPrecondition (force over an output ucp did not write, a busy or foreign staging folder),
// Cancelled and I/O errors; on any error nothing exists at the output.
absl::StatusOr<ConvertResult> Convert(const ConvertOptions& options);

// Runs an existing plan (as Convert does after planning).
absl::StatusOr<ConvertResult> ExecuteConvert(const PlannedConvert& planned,
                                             const ConvertOptions& options);

}  // namespace ucp::converters::pipelines
