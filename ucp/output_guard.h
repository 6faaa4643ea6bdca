// The output guard: what every verb that writes (convert, reshard, export, zero-to-fp32, and the
// runtime's save) checks before anything is written, so that no verb can destroy what it reads
// or what it did not write. StagingDirectory::Create runs it; dry runs may call it directly.
//
//   1. Overlap, with or without --force: the output may not be, contain or lie inside any input
//      (every file and folder the run reads), nor be or contain a save folder holding one (an
//      output inside a save folder is where DeepSpeed itself puts <tag>_universal). Paths are
//      compared both as written (made absolute, `.`/`..` folded) and with symlinks resolved, so a
//      link or `..` cannot hide an overlap.
//   2. An existing output: an empty folder is taken over (zero_to_fp32.py writes into one);
//      anything else needs --force, and --force replaces only a previous output of ucp's own: a
//      folder whose ucp_manifest.json lists every file in it (a save folder DeepSpeed has since
//      written a new tag into is not). Otherwise the refusal names what would be deleted.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace ucp {

struct OutputCheck {
  std::vector<std::string> inputs = {};  // files and folders the run reads
  std::vector<std::string> save_folders =
      {};              // folders holding an input (the output may lie inside)
  bool force = false;  // replace an existing output of ucp's own
};

// OK when `out` may be written. InvalidArgument for an overlap (naming both paths);
// AlreadyExists for an existing output without force; FailedPrecondition when force would delete
// something ucp did not write (naming it).
absl::Status CheckOutput(const std::string& out, const OutputCheck& check);

// Part 1 alone (for dry runs): InvalidArgument naming the output and the input it overlaps.
absl::Status CheckOverlap(const std::string& out, const OutputCheck& check);

// True when `out` exists and is an empty folder (taken over without --force).
bool IsEmptyFolder(const std::string& out);

}  // namespace ucp
