// The reshard pipeline (`ucp reshard`, docs/reshard.md): a UCP folder or a DeepSpeed ZeRO folder
// (read directly, no UCP written in between) → the DeepSpeed checkpoint DeepSpeed itself saves after
// loading it at another topology:
//   input (metadata only) → ZeroSinkInput → PlanZeroSink (pure) → ExecutePlan into
//   <out>.partial/<tag>/ → `latest` → manifest → rename to <out>.
// SaveZeroCheckpoint is the same from any ZeroSinkInput (e.g. one built from memory: the runtime's
// save). Infeasible targets are refused before anything exists at the output.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "converters/execute/executor.h"
#include "converters/plan/plan.h"
#include "converters/sinks/zero/zero_sink.h"

namespace ucp::converters::pipelines {

struct ReshardOptions {
  std::string input;   // a UCP folder (has zero/optimizer_state.pt), a ZeRO save folder or tag folder
  std::string output;  // the save folder to create: <output>/latest, <output>/<tag>/
  std::string input_tag;  // ZeRO input: the tag folder to read instead of `latest`
  // The target (resolved into a sinks::ZeroTarget: ep 0 keeps the source's; the expert order,
  // use_data_before_expert_parallelism, is the source's ds_config's).
  int dp = 1;           // data-parallel world size
  int tp = 0;           // tensor-parallel size; 0 keeps the source's (only the same tp is written)
  int autoep_size = 0;  // AutoEP autoep_size; 0 keeps the source's
  int zero_stage = -1;  // -1 keeps the source's; 1 <-> 2, 0 -> 1|2 (stage_change.h)
  std::string tag;      // target tag folder name; empty: global_step<global_steps>
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

// True when `dir` is a UCP folder (zero/optimizer_state.pt exists).
bool IsUcpFolder(const std::string& dir);

// Opens the input and plans; touches nothing at the output. A target the sink refuses
// (CheckZeroTarget: infeasible, or absurd for its plan size) is a usage error (IsUsageError),
// returned before any per-rank structure exists. Plan paths are relative to the output
// folder (<tag>/..., latest). Errors from the readers and planners, each naming its file.
struct PlannedReshard {
  plan::Plan plan;
  std::string tag;
};
absl::StatusOr<PlannedReshard> PlanReshard(const ReshardOptions& options);

// The plan of `input` written at `target` (PlanZeroSink), under <tag>/, with `latest`.
// `tp_ranks`: one input per TP rank (one for tp 1).
absl::StatusOr<PlannedReshard> PlanZeroCheckpoint(absl::Span<const sinks::ZeroSinkInput> tp_ranks,
                                                  const sinks::ZeroTarget& target);

// PlanReshard, then writes. Also AlreadyExists (output exists, no force) and I/O errors; on any
// error nothing exists at the output.
absl::StatusOr<ReshardResult> Reshard(const ReshardOptions& options);

// PlanZeroCheckpoint, then writes `output` like Reshard. The input must outlive the call.
absl::StatusOr<ReshardResult> SaveZeroCheckpoint(const sinks::ZeroSinkInput& input, const sinks::ZeroTarget& target,
                                                 const std::string& output, const execute::ExecuteOptions& execute,
                                                 bool force = false);

}  // namespace ucp::converters::pipelines
