#include "cli/commands/export_command.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/commands/command_output.h"
#include "cli/commands/interrupt.h"
#include "cli/commands/launch_ranks.h"
#include "cli/commands/option_checks.h"
#include "cli/commands/progress.h"
#include "converters/sinks/export_tensors.h"
#include "formats/base/byte_size.h"
#include "nlohmann/json.hpp"

namespace ucp::cli {
namespace {

using converters::pipelines::ExportFormat;
using converters::pipelines::MoeLayout;

// The command line's choices as ExportOptions; a usage message when one is not valid.
std::string ApplyChoices(const ExportCommandOptions& o, converters::pipelines::ExportOptions& e) {
  if (o.zero_to_fp32) {
    e.format = o.safe_serialization ? ExportFormat::kSafetensors : ExportFormat::kBin;
  } else if (auto format = converters::sinks::WeightsFormatFromName(o.format)) {
    e.format = *format;
  } else {
    return absl::StrCat("--format: ", CheckOneOf(o.format, kExportFormats));
  }
  if (!o.dtype.empty()) {
    e.dtype = ExportDType(o.dtype);
    if (!e.dtype) return absl::StrCat("--dtype: ", CheckOneOf(o.dtype, kExportDTypes));
  }
  if (auto layout = converters::sinks::MoeLayoutFromName(o.moe_layout)) {
    e.moe_layout = *layout;
  } else {
    return absl::StrCat("--moe-layout: ", CheckOneOf(o.moe_layout, kMoeLayouts));
  }
  if (!o.max_shard_size.empty()) {
    absl::StatusOr<uint64_t> size = ParseByteSize(o.max_shard_size);
    if (!size.ok()) return absl::StrCat("--max-shard-size: ", size.status().message());
    e.max_shard_size = *size;
  }
  return "";
}

}  // namespace

std::optional<DType> ExportDType(absl::string_view name) {
  return converters::sinks::WeightsDTypeFromName(name);
}

int RunExport(const ExportCommandOptions& o, std::ostream& out, std::ostream& err) {
  const CommandOutput output{out, err, o.zero_to_fp32 ? "zero-to-fp32" : "export", o.json};
  converters::pipelines::ExportOptions e;
  e.input = o.input;
  e.output = o.output;
  e.tag = o.tag;
  e.exclude_frozen = o.exclude_frozen;
  e.zero_to_fp32 = o.zero_to_fp32;
  e.force = o.force;
  e.dry_run = o.dry_run;
  e.execute.threads = o.threads;
  e.execute.fsync = !o.no_fsync;
  e.execute.distributed = o.distributed;
  if (std::string bad = ApplyChoices(o, e); !bad.empty()) return Fail(output, bad, kExitUsage);
  if (o.dry_run) WarnIfOutputExists(err, o.output, o.force);
  ProgressLine progress(err, o.progress && !o.dry_run);
  e.execute.progress = progress.Callback();
  e.execute.cancel = CancelFlag();
  absl::StatusOr<converters::pipelines::ExportResult> r = converters::pipelines::Export(e);
  progress.Finish();
  if (!r.ok()) return RunFailed(output, r.status());
  if (IsSecondaryRank(o.distributed)) return kExitOk;  // rank 0 reports the run
  if (r->removed_stale_partial)
    err << "note: removed " << r->staging << ", left behind by an interrupted run\n";
  for (const std::string& note : r->notes) err << "note: " << note << "\n";
  for (const std::string& warning : r->warnings) err << "warning: " << warning << "\n";
  if (o.json) {
    nlohmann::json j = JsonDocument(output.command);
    j.update({{"output", r->output},
              {"files", r->files},
              {"num_tensors", r->tensors},
              {"bytes", r->bytes},
              {"source_kind", r->source_kind},
              {"dry_run", o.dry_run},
              {"step", r->step ? nlohmann::json(*r->step) : nlohmann::json(nullptr)},
              {"seconds", o.dry_run ? nlohmann::json(nullptr) : nlohmann::json(r->stats.seconds)},
              {"notes", r->notes},
              {"warnings", r->warnings}});
    WriteJson(out, j);
  } else {
    out << (o.dry_run ? "would write " : "wrote ") << r->tensors << " tensors, "
        << HumanBytes(r->bytes) << " from " << r->source_kind << " to " << r->output << ": "
        << absl::StrJoin(r->files, ", ") << "\n";
  }
  return kExitOk;
}

}  // namespace ucp::cli
