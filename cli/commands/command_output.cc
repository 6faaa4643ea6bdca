#include "cli/commands/command_output.h"

#include <filesystem>
#include <system_error>

#include "formats/base/status.h"
#include "ucp/output_guard.h"

namespace ucp::cli {

nlohmann::json JsonDocument(absl::string_view command) {
  return {{"schema_version", kJsonSchemaVersion}, {"command", std::string(command)}};
}

void WriteJson(std::ostream& out, const nlohmann::json& doc) { out << doc.dump(1) << "\n"; }

int Fail(const CommandOutput& o, absl::string_view message, int exit_code) {
  o.err << "error: " << message << "\n";
  if (o.json) {
    nlohmann::json doc = JsonDocument(o.command);
    doc["error"] = std::string(message);
    if (exit_code == kExitUsage) doc["usage"] = true;
    WriteJson(o.out, doc);
  }
  return exit_code;
}

int Fail(const CommandOutput& o, const absl::Status& status, int exit_code) {
  // A target or option the library calls a usage error (formats/base/status.h) exits 2 anywhere.
  return Fail(o, status.message(), IsUsageError(status) ? kExitUsage : exit_code);
}

void WarnIfOutputExists(std::ostream& err, const std::string& output, bool force) {
  std::error_code ec;
  if (output.empty() || !std::filesystem::exists(std::filesystem::symlink_status(output, ec))) {
    return;
  }
  if (ucp::IsEmptyFolder(output)) return;  // taken over, as a run would
  // The output guard's answers without its overlap part (the planners checked that already).
  const absl::Status forced = ucp::CheckOutput(output, {.force = true});
  err << "warning: " << output << " exists: ";
  if (!forced.ok()) {
    err << "the run would refuse it, with or without --force: " << forced.message() << "\n";
  } else {
    err << (force ? "the run would replace it (--force)"
                  : "the run would refuse it (add --force to replace it)")
        << "\n";
  }
}

}  // namespace ucp::cli
