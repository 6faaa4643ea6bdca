#include "converters/execute/run_plan.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "converters/execute/rank_group.h"
#include "converters/launch/rank_env.h"
#include "formats/base/status.h"
#include "ucp/output_guard.h"
#include "ucp/staging_dir.h"

namespace ucp::converters::execute {
namespace {

bool IsCancelled(const ExecuteOptions& o) { return o.cancel != nullptr && o.cancel->load(); }

absl::Status Interrupted(const std::string& output) {
  return absl::CancelledError(absl::StrCat("interrupted; nothing was written at ", output));
}

// options.inputs and every plan source that is a file (not bytes the planner computed).
std::vector<std::string> Inputs(const plan::Plan& plan, const RunOptions& options) {
  std::vector<std::string> out = options.inputs;
  for (const plan::PlanSource& s : plan.sources) {
    if (s.memory == nullptr && !s.path.empty() && s.path.front() != '<') out.push_back(s.path);
  }
  return out;
}

}  // namespace

absl::Status CheckOverlap(const plan::Plan& plan, const RunOptions& options) {
  return ucp::CheckOverlap(ucp::NormalizeOutputPath(options.output),
                           {.inputs = Inputs(plan, options), .save_folders = options.save_folders});
}

absl::StatusOr<std::vector<const ByteSource*>> ResolveSources(
    const plan::Plan& plan, absl::Span<const ByteSource* const> files) {
  std::vector<const ByteSource*> sources;
  for (size_t i = 0; i < plan.sources.size(); ++i) {
    const ByteSource* s = plan.sources[i].memory.get();
    if (s == nullptr && i < files.size()) s = files[i];
    if (s == nullptr) {
      return absl::InternalError(
          absl::StrCat("plan source ", i, " (", plan.sources[i].path, ") has no bytes"));
    }
    sources.push_back(s);
  }
  return sources;
}

absl::StatusOr<RunResult> RunPlan(const plan::Plan& plan, absl::Span<const ByteSource* const> files,
                                  const RunOptions& options) {
  if (options.execute.distributed) {
    UCP_ASSIGN_OR_RETURN(const launch::RankEnv env, launch::ReadRankEnv());
    if (env.world_size > 1) return RunPlanDistributed(plan, files, options);
  }
  const std::string output = ucp::NormalizeOutputPath(options.output);
  if (output.empty()) return absl::InvalidArgumentError("no output folder given");
  UCP_ASSIGN_OR_RETURN(std::vector<const ByteSource*> sources, ResolveSources(plan, files));
  if (IsCancelled(options.execute)) return Interrupted(output);
  const ucp::StagingOptions staging_options{.force = options.force,
                                            .fsync = options.execute.fsync,
                                            .inputs = Inputs(plan, options),
                                            .save_folders = options.save_folders};
  UCP_ASSIGN_OR_RETURN(std::unique_ptr<ucp::StagingDirectory> staging,
                       ucp::StagingDirectory::Create(output, staging_options));
  UCP_RETURN_IF_ERROR(staging->MakeDirs(plan.Directories()));
  absl::StatusOr<ExecuteResult> executed =
      ExecutePlan(plan, sources, staging->path(), options.execute);
  if (absl::IsCancelled(executed.status()) || (executed.ok() && IsCancelled(options.execute))) {
    return Interrupted(output);
  }
  if (!executed.ok()) return executed.status();
  RunResult result;
  result.output = output;
  result.staging = staging->path();
  result.removed_stale_partial = staging->removed_stale();
  result.stats = executed->stats;
  for (const ucp::ManifestEntry& e : executed->files) result.bytes += e.size;
  ucp::Manifest manifest;
  manifest.files = std::move(executed->files);
  UCP_RETURN_IF_ERROR(staging->Commit(manifest));
  result.files = std::move(manifest.files);
  return result;
}

}  // namespace ucp::converters::execute
