#include "cli/commands/verify_command.h"

#include "absl/status/statusor.h"
#include "converters/verify/verify.h"

namespace ucp::cli {

int RunVerify(const VerifyCommandOptions& options, std::ostream& out, std::ostream& err) {
  converters::verify::VerifyOptions verify_options;
  verify_options.tag = options.tag;
  verify_options.check_crc = !options.no_crc;
  absl::StatusOr<converters::verify::VerifyReport> report =
      converters::verify::VerifyCheckpoint(options.path, verify_options);
  if (!report.ok()) {
    err << "error: " << report.status().message() << "\n";
    return 1;
  }
  if (options.json) {
    out << converters::verify::ReportToJson(*report).dump(2) << "\n";
  } else {
    out << converters::verify::ReportToText(*report);
  }
  return report->ok() ? 0 : 1;
}

}  // namespace ucp::cli
