#include "converters/pipelines/convert.h"

#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
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

bool SamePath(const std::string& a, const std::string& b) {
  std::error_code ec1, ec2;
  const fs::path pa = fs::weakly_canonical(a, ec1);
  const fs::path pb = fs::weakly_canonical(b, ec2);
  return !ec1 && !ec2 && pa == pb;
}

}  // namespace

std::string DefaultOutput(const deepspeed::CheckpointDir& dir) {
  const std::string root = dir.root.empty() ? ParentOf(store::NormalizeOutputPath(dir.tag_dir)) : dir.root;
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
        absl::StrCat(options.input, ": ", store::SourceKindName(input.kind), " weights (",
                     input.why, "), not a DeepSpeed ZeRO checkpoint"));
  }
  UCP_ASSIGN_OR_RETURN(deepspeed::CheckpointIndex index, deepspeed::OpenCheckpoint(input.path));
  std::string output = options.output.empty() ? DefaultOutput(index.dir) : store::NormalizeOutputPath(options.output);
  if (SamePath(output, index.dir.tag_dir) || (!index.dir.root.empty() && SamePath(output, index.dir.root))) {
    return absl::InvalidArgumentError(absl::StrCat("output folder ", output, " is the input checkpoint folder"));
  }
  UCP_ASSIGN_OR_RETURN(plan::Plan plan, plan::PlanZeroToUcp(index, options.plan));
  return PlannedConvert{std::move(index), std::move(plan), std::move(output)};
}

absl::StatusOr<ConvertResult> ExecuteConvert(const PlannedConvert& planned, const ConvertOptions& options) {
  const bool fsync = options.execute.fsync;
  UCP_ASSIGN_OR_RETURN(std::unique_ptr<store::StagingDirectory> staging,
                       store::StagingDirectory::Create(planned.output, {.force = options.force, .fsync = fsync}));
  UCP_RETURN_IF_ERROR(staging->MakeDirs(planned.plan.Directories()));
  std::vector<const ByteSource*> sources;
  for (const deepspeed::CheckpointFile& f : planned.index.files) sources.push_back(&f.torch->zip().source());
  // Sources after the index's files are bytes the planner computed (TP averages).
  for (size_t i = sources.size(); i < planned.plan.sources.size(); ++i) {
    sources.push_back(planned.plan.sources[i].memory.get());
  }
  UCP_ASSIGN_OR_RETURN(execute::ExecuteResult executed,
                       execute::ExecutePlan(planned.plan, sources, staging->path(), options.execute));
  ConvertResult result;
  result.output = planned.output;
  result.removed_stale_partial = staging->removed_stale();
  result.info = planned.plan.info;
  result.files = executed.files.size();
  result.bytes = planned.plan.TotalBytes();
  result.stats = executed.stats;
  store::Manifest manifest;
  manifest.files = std::move(executed.files);
  UCP_RETURN_IF_ERROR(staging->Commit(manifest));
  if (options.write_latest) {
    UCP_RETURN_IF_ERROR(store::WriteLatestUniversal(planned.output, fsync));
    result.latest_universal = absl::StrCat(ParentOf(planned.output), "/", store::kLatestUniversalFile);
  }
  return result;
}

absl::StatusOr<ConvertResult> Convert(const ConvertOptions& options) {
  UCP_ASSIGN_OR_RETURN(PlannedConvert planned, PlanConvert(options));
  return ExecuteConvert(planned, options);
}

}  // namespace ucp::converters::pipelines
