#include "cli/commands/verify_command.h"

#include "absl/status/statusor.h"
#include "cli/commands/command_output.h"
#include "converters/verify/verify.h"

namespace ucp::cli {

int RunVerify(const VerifyCommandOptions& options, std::ostream& out, std::ostream& err) {
  const CommandOutput output{out, err, "verify", options.json};
  converters::verify::VerifyOptions verify_options;
  verify_options.tag = options.tag;
  verify_options.check_crc = !options.no_crc;
  absl::StatusOr<converters::verify::VerifyReport> report =
      converters::verify::VerifyCheckpoint(options.path, verify_options);
  if (!report.ok()) return Fail(output, report.status());
  if (options.json) {
    nlohmann::json j = JsonDocument(output.command);
    j.update(converters::verify::ReportToJson(*report));
    WriteJson(out, j);
  } else {
    out << converters::verify::ReportToText(*report);
  }
  if (!report->ok()) return kExitFailure;
  return report->complete() ? kExitOk : kExitIncomplete;
}

}  // namespace ucp::cli
