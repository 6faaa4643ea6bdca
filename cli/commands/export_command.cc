#include "cli/commands/export_command.h"

#include "absl/strings/str_join.h"
#include "cli/commands/interrupt.h"
#include "cli/commands/progress.h"
#include "formats/base/byte_size.h"
#include "nlohmann/json.hpp"

namespace ucp::cli {

int RunExport(const ExportCommandOptions& o, std::ostream& out, std::ostream& err) {
  using converters::pipelines::ExportFormat;
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
  if (o.zero_to_fp32) {
    e.format = o.safe_serialization ? ExportFormat::kSafetensors : ExportFormat::kBin;
  } else if (o.format == "safetensors") {
    e.format = ExportFormat::kSafetensors;
  } else if (o.format == "bin") {
    e.format = ExportFormat::kBin;
  } else if (o.format == "hdf5") {
    e.format = ExportFormat::kHdf5;
  } else {
    err << "error: --format must be safetensors, bin or hdf5, not '" << o.format << "'\n";
    return 2;
  }
  if (o.dtype == "fp32") e.dtype = DType::kF32;
  else if (o.dtype == "bf16") e.dtype = DType::kBF16;
  else if (o.dtype == "fp16") e.dtype = DType::kF16;
  else if (!o.dtype.empty()) {
    err << "error: --dtype must be fp32, bf16 or fp16, not '" << o.dtype << "'\n";
    return 2;
  }
  if (o.moe_layout == "per-expert") e.moe_layout = converters::pipelines::MoeLayout::kPerExpert;
  else if (o.moe_layout != "fused") {
    err << "error: --moe-layout must be fused or per-expert\n";
    return 2;
  }
  if (!o.max_shard_size.empty()) {
    absl::StatusOr<uint64_t> size = ParseByteSize(o.max_shard_size);
    if (!size.ok()) {
      err << "error: " << size.status().message() << "\n";
      return 2;
    }
    e.max_shard_size = *size;
  }
  ProgressLine progress(err, o.progress && !o.dry_run);
  e.execute.progress = progress.Callback();
  e.execute.cancel = CancelFlag();
  absl::StatusOr<converters::pipelines::ExportResult> r = converters::pipelines::Export(e);
  progress.Finish();
  if (!r.ok()) return RunFailed(err, r.status());
  if (r->removed_stale_partial)
    err << "note: removed " << r->staging << ", left behind by an interrupted run\n";
  for (const std::string& note : r->notes) err << "note: " << note << "\n";
  for (const std::string& warning : r->warnings) err << "warning: " << warning << "\n";
  if (o.json) {
    nlohmann::json j = {{"output", r->output}, {"files", r->files}, {"tensors", r->tensors}, {"bytes", r->bytes},
                        {"source_kind", r->source_kind}, {"dry_run", o.dry_run}};
    if (r->step) j["step"] = *r->step;
    if (!o.dry_run) j["seconds"] = r->stats.seconds;
    out << j.dump(1) << "\n";
  } else {
    out << (o.dry_run ? "would write " : "wrote ") << r->tensors << " tensors, "
        << HumanBytes(r->bytes) << " from " << r->source_kind << " to " << r->output << ": "
        << absl::StrJoin(r->files, ", ") << "\n";
  }
  return 0;
}

}  // namespace ucp::cli
