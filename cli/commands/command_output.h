// How every verb reports its outcome: the exit codes, the JSON envelope of --json documents
// (docs/json.md: schema_version and command in every one) and failures, which are one "error: ..."
// line on stderr and, under --json, also {"schema_version", "command", "error"} on stdout, so that
// a script reading stdout always gets one JSON document.
#pragma once

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace ucp::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;     // the verb failed, or found differences / problems
inline constexpr int kExitUsage = 2;       // bad command line
inline constexpr int kExitIncomplete = 3;  // ucp verify: no problem found, but checks were skipped

// The version of every --json document's layout (docs/json.md); bumped when a field changes
// meaning or goes away, not when one is added.
inline constexpr int kJsonSchemaVersion = 1;

// Where a verb writes: stdout, stderr, and whether stdout carries a JSON document.
struct CommandOutput {
  std::ostream& out;
  std::ostream& err;
  std::string command;  // "inspect", "convert", ..., as typed after `ucp`
  bool json = false;
};

// {"schema_version": 1, "command": <command>}: the start of every --json document.
nlohmann::json JsonDocument(absl::string_view command);
// Writes `doc` (indented by one space) and a newline.
void WriteJson(std::ostream& out, const nlohmann::json& doc);
// Reports a failure (see the file comment) and returns `exit_code`.
int Fail(const CommandOutput& o, absl::string_view message, int exit_code = kExitFailure);
int Fail(const CommandOutput& o, const absl::Status& status, int exit_code = kExitFailure);
// --dry-run: a "warning:" line on `err` when `output` exists (and is not an empty folder), saying
// what the real run would do with it, as the output guard (ucp/output_guard.h) decides: replace it
// (--force over an earlier output of ucp's own), or refuse it.
void WarnIfOutputExists(std::ostream& err, const std::string& output, bool force);

}  // namespace ucp::cli
