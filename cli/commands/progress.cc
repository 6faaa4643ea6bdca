#include "cli/commands/progress.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "formats/base/byte_size.h"

namespace ucp::cli {
namespace {

std::string Duration(double seconds) {
  const int64_t s = static_cast<int64_t>(std::llround(std::max(0.0, seconds)));
  return s >= 3600 ? absl::StrFormat("%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                   : absl::StrFormat("%d:%02d", s / 60, s % 60);
}

}  // namespace

ProgressLine::ProgressLine(std::ostream& err, bool enabled)
    : err_(err), enabled_(enabled), start_(std::chrono::steady_clock::now()) {}

std::function<void(const converters::execute::ExecuteProgress&)> ProgressLine::Callback() {
  if (!enabled_) return nullptr;
  return [this](const converters::execute::ExecuteProgress& p) { Draw(p); };
}

void ProgressLine::Draw(const converters::execute::ExecuteProgress& p) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(p.bytes_done) / elapsed : 0;
  const double left = static_cast<double>(p.bytes_total - std::min(p.bytes_done, p.bytes_total));
  const int percent =
      p.bytes_total == 0 ? 100 : static_cast<int>(100.0 * p.bytes_done / p.bytes_total);
  std::string line = absl::StrCat("\r  ", HumanBytes(p.bytes_done), " / ",
                                  HumanBytes(p.bytes_total), "  ", percent, "%  ", HumanBytes(rate),
                                  "/s  ETA ", rate > 0 ? Duration(left / rate) : "?", "  (",
                                  p.files_done, "/", p.files_total, " files)");
  const size_t width = line.size();
  if (width < width_) line.append(width_ - width, ' ');
  width_ = std::max(width_, width);
  err_ << line << std::flush;
  drawn_ = true;
}

void ProgressLine::Finish() {
  if (drawn_) err_ << "\n";
  drawn_ = false;
}

}  // namespace ucp::cli
