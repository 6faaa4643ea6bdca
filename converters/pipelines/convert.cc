#include "converters/pipelines/convert.h"

#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/execute/run_plan.h"
#include "converters/sinks/ucp_folder_sink.h"
#include "converters/sources/sniff.h"
#include "formats/base/status.h"
#include "ucp/staging_dir.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::pipelines {
namespace {

namespace fs = std::filesystem;

std::string ParentOf(const std::string& path) {
  fs::path p = fs::path(path).parent_path();
  return p.empty() ? "." : p.string();
}

// What a conversion reads: the tag folder (and its files, which RunPlan adds from the plan) in
// the save folder the user named.
execute::RunOptions RunOptionsFor(const PlannedConvert& planned, const ConvertOptions& options) {
  execute::RunOptions run;
  run.output = planned.output;
  run.force = options.force;
  run.inputs = {planned.index.dir.tag_dir};
  run.save_folders = {options.input};
  if (!planned.index.dir.root.empty()) run.save_folders.push_back(planned.index.dir.root);
  run.execute = options.execute;
  return run;
}

}  // namespace

std::string DefaultOutput(const formats::deepspeed::CheckpointDir& dir) {
  const std::string root =
      dir.root.empty() ? ParentOf(ucp::NormalizeOutputPath(dir.tag_dir)) : dir.root;
  return absl::StrCat(root, "/", dir.tag, "_universal");
}

absl::StatusOr<PlannedConvert> PlanConvert(const ConvertOptions& options) {
  sources::SniffOptions sniff;
  sniff.tag = options.tag;
  UCP_ASSIGN_OR_RETURN(sources::SniffedCheckpoint input,
                       sources::SniffCheckpoint(options.input, sniff));
  if (input.is_universal()) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.input, " is already a Universal Checkpoint (", input.path, ": ", input.why,
        "); `ucp reshard`, `ucp export` and DeepSpeed's "
        "load_universal read it as it is"));
  }
  if (input.is_weights()) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.input, ": ", ucp::SourceKindName(input.kind), " weights (", input.why,
                     "), not a DeepSpeed ZeRO checkpoint"));
  }
  UCP_ASSIGN_OR_RETURN(deepspeed::CheckpointIndex index, deepspeed::OpenCheckpoint(input.path));
  std::string output =
      options.output.empty() ? DefaultOutput(index.dir) : ucp::NormalizeOutputPath(options.output);
  UCP_ASSIGN_OR_RETURN(plan::Plan plan, sinks::UcpFolderSink(options.plan).Plan(index));
  PlannedConvert planned{std::move(index), std::move(plan), std::move(output)};
  // Refused here already, so that a dry run says so too.
  UCP_RETURN_IF_ERROR(execute::CheckOverlap(planned.plan, RunOptionsFor(planned, options)));
  return planned;
}

absl::StatusOr<ConvertResult> ExecuteConvert(const PlannedConvert& planned,
                                             const ConvertOptions& options) {
  // The plan's first sources are the index's files; the rest are bytes the planner computed.
  std::vector<const ByteSource*> files;
  for (const deepspeed::CheckpointFile& f : planned.index.files)
    files.push_back(&f.torch->zip().source());
  UCP_ASSIGN_OR_RETURN(execute::RunResult written,
                       execute::RunPlan(planned.plan, files, RunOptionsFor(planned, options)));
  ConvertResult result;
  result.output = planned.output;
  result.staging = written.staging;
  result.removed_stale_partial = written.removed_stale_partial;
  result.info = planned.plan.info;
  result.files = written.files.size();
  result.bytes = written.bytes;
  result.stats = written.stats;
  if (options.write_latest && written.rank == 0) {
    UCP_RETURN_IF_ERROR(ucp::WriteLatestUniversal(planned.output, options.execute.fsync));
    result.latest_universal =
        absl::StrCat(ParentOf(planned.output), "/", ucp::kLatestUniversalFile);
  }
  return result;
}

absl::StatusOr<ConvertResult> Convert(const ConvertOptions& options) {
  UCP_ASSIGN_OR_RETURN(PlannedConvert planned, PlanConvert(options));
  return ExecuteConvert(planned, options);
}

}  // namespace ucp::converters::pipelines
