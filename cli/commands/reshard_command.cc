#include "cli/commands/reshard_command.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/commands/command_output.h"
#include "cli/commands/interrupt.h"
#include "cli/commands/launch_ranks.h"
#include "cli/commands/progress.h"
#include "converters/pipelines/reshard.h"
#include "formats/base/byte_size.h"
#include "formats/base/status.h"
#include "nlohmann/json.hpp"

namespace ucp::cli {
namespace {

namespace pipelines = converters::pipelines;

}  // namespace

int RunReshard(const ReshardCommandOptions& o, std::ostream& out, std::ostream& err) {
  const CommandOutput output{out, err, "reshard", o.json};
  absl::StatusOr<uint64_t> memory = ParseByteSize(o.memory_limit);
  if (!memory.ok()) {
    return Fail(output, absl::StrCat("--memory-limit: ", memory.status().message()), kExitUsage);
  }
  if (o.dp < 1) return Fail(output, "--dp: expected a whole number >= 1", kExitUsage);
  pipelines::ReshardOptions options;
  options.input = o.input;
  options.output = o.output;
  options.input_tag = o.input_tag;
  options.dp = o.dp;
  options.tp = o.tp;
  options.autoep_size = o.autoep_size;
  options.zero_stage = o.zero_stage;
  options.tag = o.tag;
  options.force = o.force;
  options.execute.threads = o.threads;
  options.execute.memory_limit = *memory;
  options.execute.fsync = !o.no_fsync;
  options.execute.distributed = o.distributed;
  if (o.dry_run) {
    absl::StatusOr<pipelines::PlannedReshard> planned = pipelines::PlanReshard(options);
    if (!planned.ok()) return Fail(output, planned.status());
    WarnIfOutputExists(err, o.output, o.force);
    if (o.json) {
      nlohmann::json j = JsonDocument(output.command);
      j.update(converters::plan::ToJson(planned->plan));
      j["dry_run"] = true;
      j["output"] = o.output;
      j["tag"] = planned->tag;
      WriteJson(out, j);
    } else {
      out << converters::plan::Summary(planned->plan) << "output:    " << o.output << "/"
          << planned->tag << " (dry run: nothing written)\n";
    }
    return kExitOk;
  }
  ProgressLine progress(err, o.progress);
  options.execute.progress = progress.Callback();
  options.execute.cancel = CancelFlag();
  absl::StatusOr<pipelines::ReshardResult> r = pipelines::Reshard(options);
  progress.Finish();
  if (!r.ok()) return RunFailed(output, r.status());
  if (IsSecondaryRank(o.distributed)) return kExitOk;  // rank 0 reports the run
  if (r->removed_stale_partial)
    err << "note: removed " << r->staging << ", left behind by an interrupted run\n";
  if (o.json) {
    nlohmann::json j = JsonDocument(output.command);
    j.update({{"dry_run", false},
              {"output", r->output},
              {"tag", r->tag},
              {"num_files", r->files},
              {"bytes", r->bytes},
              {"seconds", r->stats.seconds},
              {"zero_stage", r->info.zero_stage},
              {"dp", r->info.dp_size},
              {"tp", r->info.tp_size},
              {"ep", r->info.ep_size}});
    WriteJson(out, j);
  } else {
    out << "wrote " << r->output << "/" << r->tag << ": " << r->files << " files, "
        << HumanBytes(r->bytes) << " in " << absl::StrFormat("%.2f", r->stats.seconds)
        << " s (ZeRO-" << r->info.zero_stage << ", dp " << r->info.dp_size << ", ep "
        << r->info.ep_size << ")\n";
  }
  return kExitOk;
}

}  // namespace ucp::cli
