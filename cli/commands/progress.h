// The progress line the verbs that write draw on stderr when it is a terminal:
//   "\r  1.2 GiB / 3.4 GiB  35%  512.0 MiB/s  ETA 0:04  (12/345 files)"
// Bytes are the output files' bytes (converters/execute/executor.h ExecuteProgress), so the last
// line drawn shows the same total as the verb's final "wrote ..." line.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <ostream>

#include "converters/execute/executor.h"

namespace ucp::cli {

class ProgressLine {
 public:
  // Draws nothing unless `enabled` (main passes isatty(stderr)).
  ProgressLine(std::ostream& err, bool enabled);
  // The executor's callback; null when disabled.
  std::function<void(const converters::execute::ExecuteProgress&)> Callback();
  // Ends the line (a newline after the last draw), before anything else is printed.
  void Finish();

 private:
  void Draw(const converters::execute::ExecuteProgress& p);

  std::ostream& err_;
  bool enabled_;
  std::chrono::steady_clock::time_point start_;
  size_t width_ = 0;
  bool drawn_ = false;
};

}  // namespace ucp::cli
