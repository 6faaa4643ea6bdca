#include "converters/pipelines/export.h"

#include <memory>
#include <utility>
#include <vector>

#include "converters/execute/run_plan.h"
#include "converters/sinks/weights_sink.h"
#include "converters/sources/open_source.h"
#include "formats/base/status.h"
#include "ucp/staging_dir.h"

namespace ucp::converters::pipelines {

absl::StatusOr<ExportResult> Export(const ExportOptions& options) {
  if (options.output.empty()) return absl::InvalidArgumentError("no output folder given");
  sources::OpenSourceOptions open;
  open.tag = options.tag;
  UCP_ASSIGN_OR_RETURN(std::unique_ptr<ucp::Source> source,
                       sources::OpenSource(options.input, open));
  const sinks::WeightsTarget& target = options;
  std::unique_ptr<sinks::Sink<ucp::Source>> sink;
  if (options.format == ExportFormat::kHdf5) {
    sink = std::make_unique<sinks::Hdf5Sink>(target);
  } else {
    sink = std::make_unique<sinks::WeightsSink>(target);
  }
  UCP_ASSIGN_OR_RETURN(plan::Plan plan, sink->Plan(*source));
  ExportResult result;
  result.output = ucp::NormalizeOutputPath(options.output);
  for (const plan::PlanFile& f : plan.files) result.files.push_back(f.path);
  result.tensors = static_cast<size_t>(plan.info.params);
  result.bytes = plan.TotalBytes();
  result.source_kind = std::string(ucp::SourceKindName(source->kind()));
  result.step = source->info().step;
  result.notes = plan.info.notes;
  result.warnings = plan.info.warnings;

  execute::RunOptions run;
  run.output = result.output;
  run.force = options.force;
  run.inputs = {source->info().path};
  run.save_folders = {options.input};
  run.execute = options.execute;
  if (options.dry_run) {
    UCP_RETURN_IF_ERROR(execute::CheckOverlap(plan, run));
    return result;
  }
  std::vector<const ByteSource*> files;
  for (const auto& f : source->files()) files.push_back(f.get());
  UCP_ASSIGN_OR_RETURN(execute::RunResult written, execute::RunPlan(plan, files, run));
  result.staging = written.staging;
  result.removed_stale_partial = written.removed_stale_partial;
  result.bytes = written.bytes;
  result.stats = written.stats;
  return result;
}

}  // namespace ucp::converters::pipelines
