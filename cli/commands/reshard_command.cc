#include "cli/commands/reshard_command.h"

#include "absl/strings/str_format.h"
#include "cli/commands/interrupt.h"
#include "cli/commands/progress.h"
#include "converters/pipelines/reshard.h"
#include "formats/base/byte_size.h"
#include "formats/base/status.h"
#include "nlohmann/json.hpp"

namespace ucp::cli {
namespace {

namespace pipelines = converters::pipelines;

// One error line; exit 2 for a usage error (an option or a target that can never work), else 1.
int Fail(std::ostream& err, const absl::Status& status) {
  err << "error: " << status.message() << "\n";
  return IsUsageError(status) ? 2 : 1;
}

}  // namespace

int RunReshard(const ReshardCommandOptions& o, std::ostream& out, std::ostream& err) {
  absl::StatusOr<uint64_t> memory = ParseByteSize(o.memory_limit);
  if (!memory.ok()) return Fail(err, AsUsageError(memory.status()));
  if (o.dp < 1) return Fail(err, UsageError("--dp must be >= 1"));
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
  if (o.dry_run) {
    absl::StatusOr<pipelines::PlannedReshard> planned = pipelines::PlanReshard(options);
    if (!planned.ok()) return Fail(err, planned.status());
    if (o.json) {
      nlohmann::json j = converters::plan::ToJson(planned->plan);
      j["output"] = o.output;
      j["tag"] = planned->tag;
      out << j.dump(1) << "\n";
    } else {
      out << converters::plan::Summary(planned->plan) << "output:    " << o.output << "/" << planned->tag
          << " (dry run: nothing written)\n";
    }
    return 0;
  }
  ProgressLine progress(err, o.progress);
  options.execute.progress = progress.Callback();
  options.execute.cancel = CancelFlag();
  absl::StatusOr<pipelines::ReshardResult> r = pipelines::Reshard(options);
  progress.Finish();
  if (!r.ok()) return IsUsageError(r.status()) ? Fail(err, r.status()) : RunFailed(err, r.status());
  if (r->removed_stale_partial)
    err << "note: removed " << r->staging << ", left behind by an interrupted run\n";
  if (o.json) {
    out << nlohmann::json{{"output", r->output},     {"tag", r->tag},
                          {"files", r->files},       {"bytes", r->bytes},
                          {"seconds", r->stats.seconds}, {"zero_stage", r->info.zero_stage},
                          {"dp", r->info.dp_size},   {"tp", r->info.tp_size},   {"ep", r->info.ep_size}}
               .dump(1)
        << "\n";
  } else {
    out << "wrote " << r->output << "/" << r->tag << ": " << r->files << " files, "
        << HumanBytes(r->bytes) << " in " << absl::StrFormat("%.2f", r->stats.seconds)
        << " s (ZeRO-" << r->info.zero_stage << ", dp " << r->info.dp_size << ", ep "
        << r->info.ep_size << ")\n";
  }
  return 0;
}

}  // namespace ucp::cli
