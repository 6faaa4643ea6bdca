// The reshard pipeline (`ucp reshard`, docs/reshard.md): a UCP folder or a DeepSpeed ZeRO folder
// (read directly, no UCP written in between) → the DeepSpeed checkpoint DeepSpeed itself saves after
// loading it at another topology:
//   input (metadata only) → PlanUcpToZero12 / PlanZero3Reshard (pure) → ExecutePlan into
//   <out>.partial/<tag>/ → `latest` → manifest → rename to <out>.
// Infeasible targets are refused before anything exists at the output.
#pragma once

#include <string>

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
  std::string tag;
  plan::PlanInfo info;
  size_t files = 0;
  uint64_t bytes = 0;
  execute::ExecuteStats stats;
};

// Opens the input and plans; touches nothing at the output. Plan paths are relative to the output
// folder (<tag>/..., latest). Errors from the readers and planners, each naming its file.
struct PlannedReshard {
  plan::Plan plan;
  std::string tag;
};
absl::StatusOr<PlannedReshard> PlanReshard(const ReshardOptions& options);

// PlanReshard, then writes. Also AlreadyExists (output exists, no force) and I/O errors; on any
// error nothing exists at the output.
absl::StatusOr<ReshardResult> Reshard(const ReshardOptions& options);

}  // namespace ucp::converters::pipelines
