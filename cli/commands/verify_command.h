// `ucp verify DIR`: checks a checkpoint folder (DeepSpeed ZeRO, Universal Checkpoint, or a ucp
// export with ucp_manifest.json) and names every problem (converters/verify/verify.h).
// Exit codes: 0 no problem, 1 problems found (or DIR is not a checkpoint: one "error:" line),
// 3 no problem found but some checks could not be made (the report lists them as skipped).
#pragma once

#include <ostream>
#include <string>

namespace ucp::cli {

struct VerifyCommandOptions {
  std::string path;
  std::string tag;      // ZeRO save folder: the tag to check instead of `latest`'s
  bool json = false;    // one JSON document on `out` (also when problems are found)
  bool no_crc = false;  // skip reading every record for its CRC-32 (structure only)
};

int RunVerify(const VerifyCommandOptions& options, std::ostream& out, std::ostream& err);

}  // namespace ucp::cli
