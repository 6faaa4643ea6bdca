#include "cli/commands/convert_command.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/commands/command_output.h"
#include "cli/commands/interrupt.h"
#include "cli/commands/launch_ranks.h"
#include "cli/commands/progress.h"
#include "converters/pipelines/convert.h"
#include "formats/base/byte_size.h"
#include "nlohmann/json.hpp"

namespace ucp::cli {
namespace {

namespace pipelines = converters::pipelines;

nlohmann::json ResultJson(const pipelines::ConvertResult& r) {
  return {{"dry_run", false},
          {"output", r.output},
          {"latest_universal", r.latest_universal},
          {"num_files", r.files},
          {"bytes", r.bytes},
          {"seconds", r.stats.seconds},
          {"threads", r.stats.threads},
          {"chunk_bytes", r.stats.chunk_bytes},
          {"peak_buffer_bytes", r.stats.peak_buffer_bytes},
          {"removed_stale_partial", r.removed_stale_partial},
          {"zero_stage", r.info.zero_stage},
          {"params", r.info.params}};
}

}  // namespace

int RunConvert(const ConvertCommandOptions& o, std::ostream& out, std::ostream& err) {
  const CommandOutput output{out, err, "convert", o.json};
  if (o.keep_temp_folder) {
    err << "note: --keep_temp_folder has no effect: ucp streams fragments into the final files and "
           "writes no "
           "temporary folder\n";
  }
  absl::StatusOr<uint64_t> memory = ParseByteSize(o.memory_limit);
  if (!memory.ok()) {
    return Fail(output, absl::StrCat("--memory-limit: ", memory.status().message()), kExitUsage);
  }
  pipelines::ConvertOptions options;
  options.input = o.input;
  options.output = o.output;
  options.tag = o.tag;
  options.force = o.force;
  options.plan.strict = !o.no_strict;
  options.plan.inject_missing_state = o.inject_missing_state;
  options.execute.threads = o.threads > 0 ? o.threads : o.num_extract_workers;
  options.execute.memory_limit = *memory;
  options.execute.fsync = !o.no_fsync;
  options.execute.distributed = o.distributed;

  if (o.dry_run) {
    absl::StatusOr<pipelines::PlannedConvert> planned = pipelines::PlanConvert(options);
    if (!planned.ok()) return Fail(output, planned.status());
    WarnIfOutputExists(err, planned->output, o.force);
    if (o.json) {
      nlohmann::json j = JsonDocument(output.command);
      j.update(converters::plan::ToJson(planned->plan));
      j["dry_run"] = true;
      j["output"] = planned->output;
      WriteJson(out, j);
    } else {
      out << converters::plan::Summary(planned->plan) << "output:    " << planned->output
          << " (dry run: nothing written)\n";
    }
    return kExitOk;
  }

  ProgressLine progress(err, o.progress);
  options.execute.progress = progress.Callback();
  options.execute.cancel = CancelFlag();
  absl::StatusOr<pipelines::ConvertResult> result = pipelines::Convert(options);
  progress.Finish();
  if (!result.ok()) return RunFailed(output, result.status());
  if (IsSecondaryRank(o.distributed)) return kExitOk;  // rank 0 reports the run
  if (result->removed_stale_partial) {
    err << "note: removed " << result->staging << ", left behind by an interrupted run\n";
  }
  if (o.json) {
    nlohmann::json j = JsonDocument(output.command);
    j.update(ResultJson(*result));
    WriteJson(out, j);
  } else {
    const double rate =
        result->stats.seconds > 0 ? static_cast<double>(result->bytes) / result->stats.seconds : 0;
    out << "wrote " << result->output << ": " << result->files << " files, "
        << HumanBytes(result->bytes) << " in " << absl::StrFormat("%.2f", result->stats.seconds)
        << " s (" << HumanBytes(rate) << "/s, " << result->stats.threads << " threads)\n";
    if (!result->latest_universal.empty()) out << "wrote " << result->latest_universal << "\n";
  }
  return kExitOk;
}

}  // namespace ucp::cli
