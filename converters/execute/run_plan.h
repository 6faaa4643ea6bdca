// RunPlan: the one way a Plan becomes an output folder, shared by every verb that writes (convert,
// reshard, export in every format, zero-to-fp32) and by the runtime's save:
//
//   output guard (ucp/output_guard.h: never over an input; --force only over ucp's own output)
//   → StagingDirectory (<parent>/.ucp-<hash>.partial, locked) → ExecutePlan (copies and writers)
//   → manifest (written last) → rename to the output.
//
// All of it runs before anything exists at the output, and any error, a cancellation (SIGINT /
// SIGTERM in the CLI) or a crash leaves nothing there: the staging folder is removed on error and
// cancellation, and a kill -9's stale one is removed by the next run (`removed_stale_partial`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "converters/execute/executor.h"
#include "converters/plan/plan.h"
#include "formats/base/byte_source.h"
#include "ucp/manifest.h"

namespace ucp::converters::execute {

struct RunOptions {
  std::string output;  // the folder to create
  bool force = false;  // replace a previous ucp output there (ucp/output_guard.h)
  // What the run reads besides the plan's source files (which RunPlan adds itself): the folder a
  // Source opened (tag folder, UCP folder, weights file or folder).
  std::vector<std::string> inputs;
  // Save folders holding an input: the output may lie inside one but not be or contain it.
  std::vector<std::string> save_folders;
  ExecuteOptions execute;  // threads, memory limit, fsync, progress, cancel
};

struct RunResult {
  std::string output;                     // as written (trailing slashes dropped)
  std::string staging;                    // the staging folder it went through (gone now)
  bool removed_stale_partial = false;     // a dead run's staging folder was removed first
  std::vector<ucp::ManifestEntry> files;  // the manifest's entries
  uint64_t bytes = 0;                     // sum of the files' sizes (the manifest excluded)
  ExecuteStats stats;
  // Distributed runs: this process's rank and the world size; the payload bytes of this rank's
  // share; whether rank 0 resumed a dead run's staging. Only rank 0 fills `files` and `bytes`.
  int rank = 0;
  int world_size = 1;
  uint64_t rank_bytes = 0;
  bool resumed = false;
};

// `files[i]` serves plan.sources[i] when that has no `memory` bytes; `files` may be shorter than
// plan.sources when the rest are in memory. Errors: the output guard's (InvalidArgument for an
// overlap, AlreadyExists, FailedPrecondition), the staging folder's, ExecutePlan's, Cancelled
// ("interrupted ...", naming the output) when options.execute.cancel was set before the commit,
// Internal for a source with no bytes.
absl::StatusOr<RunResult> RunPlan(const plan::Plan& plan, absl::Span<const ByteSource* const> files,
                                  const RunOptions& options);

// RunPlan over the ranks of a launcher (docs/distributed.md): every rank computed the same plan;
// each copies its share (dist_share.h) into the shared staging folder, rank 0 writes the frames
// and the manifest after every rank reported, then commits. A rank that dies or fails makes every
// other one return Aborted naming it; the staging folder is kept, and a rerun of the same command
// skips the batches the ranks' journals list. Errors: RunPlan's, ReadRankEnv's, RankGroup::Join's
// (Unavailable for ranks that do not join), Aborted (another rank failed: its message).
absl::StatusOr<RunResult> RunPlanDistributed(const plan::Plan& plan,
                                             absl::Span<const ByteSource* const> files,
                                             const RunOptions& options);

// The byte source of every plan source: `files[i]`, or the plan's own bytes. Internal for a
// source with neither.
absl::StatusOr<std::vector<const ByteSource*>> ResolveSources(
    const plan::Plan& plan, absl::Span<const ByteSource* const> files);

// The output guard's overlap check alone, with the inputs RunPlan would use (options.inputs and
// every source of the plan that is a file): for dry runs, which refuse what a run would.
absl::Status CheckOverlap(const plan::Plan& plan, const RunOptions& options);

}  // namespace ucp::converters::execute
