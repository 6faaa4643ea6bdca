// The reshard pipeline (`ucp reshard`, docs/reshard.md): a UCP folder or a DeepSpeed ZeRO folder
// (read directly, no UCP written in between) → the DeepSpeed checkpoint DeepSpeed itself saves
// after loading it at another topology:
//   input (metadata only) → ZeroFolderSink (converters/sinks/zero_folder_sink.h: pure) →
//   RunPlan (converters/execute/run_plan.h: output guard, staging, <tag>/ and `latest`,
//   manifest, rename to <out>).
// Infeasible targets, and an output that overlaps the input, are refused before anything exists
// at the output.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "converters/execute/executor.h"
#include "converters/plan/plan.h"
#include "converters/plan/ucp_to_zero.h"

namespace ucp::converters::pipelines {

struct ReshardOptions {
  std::string input;   // a UCP folder, a ZeRO save folder or tag folder (SniffCheckpoint decides)
  std::string output;  // the save folder to create: <output>/latest, <output>/<tag>/
  std::string input_tag;  // the tag folder (ZeRO or UCP) to read instead of `latest`
  plan::ReshardTarget target;
  execute::ExecuteOptions execute;
  bool force = false;  // replace an existing output folder
};

struct ReshardResult {
  std::string output;
  std::string staging;                 // the staging folder it went through (gone now)
  bool removed_stale_partial = false;  // a dead run's staging folder was removed first
  std::string tag;
  plan::PlanInfo info;
  size_t files = 0;
  uint64_t bytes = 0;  // all files written, manifest excluded
  execute::ExecuteStats stats;
};

// Opens the input and plans; touches nothing at the output. Plan paths are relative to the output
// folder (<tag>/..., latest). Errors from the readers and planners, each naming its file, and
// InvalidArgument when options.output overlaps the input (ucp/output_guard.h).
struct PlannedReshard {
  plan::Plan plan;
  std::string tag;
  std::vector<std::string> inputs;  // the folder read: the UCP folder or the ZeRO tag folder
};
absl::StatusOr<PlannedReshard> PlanReshard(const ReshardOptions& options);

// PlanReshard, then writes. Also the output guard's errors (AlreadyExists without force; with
// force FailedPrecondition for an output ucp did not write), Cancelled and I/O errors; on any
// error nothing exists at the output.
absl::StatusOr<ReshardResult> Reshard(const ReshardOptions& options);

}  // namespace ucp::converters::pipelines
