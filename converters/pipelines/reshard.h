// The reshard pipeline (`ucp reshard`, docs/reshard.md): a UCP folder or a DeepSpeed ZeRO folder
// (read directly, no UCP written in between) → the DeepSpeed checkpoint DeepSpeed itself saves
// after loading it at another topology:
//   input (metadata only: one ZeroSinkInput per TP rank) → ZeroFolderSink
//   (converters/sinks/zero_folder_sink.h over PlanZeroSink: pure) → RunPlan
//   (converters/execute/run_plan.h: output guard, staging, <tag>/ and `latest`, manifest, rename
//   to <out>).
// SaveZeroCheckpoint is the same from any ZeroSinkInput (e.g. one built from memory: the runtime's
// save). Infeasible or absurd targets (usage errors), and an output that overlaps the input, are
// refused before anything exists at the output.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "converters/execute/executor.h"
#include "converters/plan/plan.h"
#include "converters/sinks/zero/zero_sink.h"
#include "converters/sinks/zero/zero_sink_input.h"

namespace ucp::converters::pipelines {

struct ReshardOptions {
  std::string input;   // a UCP folder, a ZeRO save folder or tag folder (SniffCheckpoint decides)
  std::string output;  // the save folder to create: <output>/latest, <output>/<tag>/
  std::string input_tag;  // the tag folder (ZeRO or UCP) to read instead of `latest`
  // The target (resolved into a sinks::ZeroTarget: tp / ep 0 keep the source's; the expert order,
  // use_data_before_expert_parallelism, is the source's ds_config's).
  int dp = 1;           // data-parallel world size
  int tp = 0;           // tensor-parallel size; 0 keeps the source's (or 1 from a UCP)
  int autoep_size = 0;  // AutoEP autoep_size; 0 keeps the source's
  int zero_stage = -1;  // -1 keeps the source's; 1 <-> 2, 0 -> 1|2 (stage_change.h)
  std::string tag;      // target tag folder name; empty: global_step<global_steps>
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
// folder (<tag>/..., latest). Errors from the readers and planners, each naming its file; a
// target the sink refuses (CheckZeroTarget: infeasible, or absurd for its plan size) is a usage
// error (IsUsageError), returned before any per-rank structure exists; InvalidArgument when
// options.output overlaps the input (ucp/output_guard.h).
struct PlannedReshard {
  plan::Plan plan;
  std::string tag;
  std::vector<std::string> inputs;  // the folder read: the UCP folder or the ZeRO tag folder
};
absl::StatusOr<PlannedReshard> PlanReshard(const ReshardOptions& options);

// The plan of `tp_ranks` (one input per TP rank; one for tp 1) written at `target`
// (ZeroFolderSink), under <tag>/, with `latest`.
absl::StatusOr<PlannedReshard> PlanZeroCheckpoint(absl::Span<const sinks::ZeroSinkInput> tp_ranks,
                                                  const sinks::ZeroTarget& target);

// PlanReshard, then writes. Also the output guard's errors (AlreadyExists without force; with
// force FailedPrecondition for an output ucp did not write), Cancelled and I/O errors; on any
// error nothing exists at the output.
absl::StatusOr<ReshardResult> Reshard(const ReshardOptions& options);

// PlanZeroCheckpoint, then writes `output` like Reshard (RunPlan). The input must outlive the call.
absl::StatusOr<ReshardResult> SaveZeroCheckpoint(const sinks::ZeroSinkInput& input,
                                                 const sinks::ZeroTarget& target,
                                                 const std::string& output,
                                                 const execute::ExecuteOptions& execute,
                                                 bool force = false);

}  // namespace ucp::converters::pipelines
