#include "runtime/train/csv_monitor.h"

#include <charconv>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace ucp::runtime {

CsvMonitor::CsvMonitor(std::string output_path, std::string job_name) {
  if (output_path.empty() && job_name.empty()) return;
  folder_ = (std::filesystem::path(output_path) / job_name).string();
}

absl::Status CsvMonitor::Write(const std::string& event, int64_t step, double value) {
  if (!active()) return absl::OkStatus();
  std::error_code ec;
  std::filesystem::create_directories(folder_, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("csv_monitor: cannot create ", folder_, ": ", ec.message()));
  const std::string file = (std::filesystem::path(folder_) /
                            (absl::StrReplaceAll(event, {{"/", "_"}, {" ", "_"}}) + ".csv"))
                               .string();
  const bool fresh = !std::filesystem::exists(file);
  std::ofstream out(file, std::ios::app);
  if (fresh) out << "step," << event.substr(event.rfind('/') + 1) << "\r\n";
  // Python's csv.writer writes repr(float): the shortest text that round-trips, "0.0" for zero.
  char number[64];
  const auto end = std::to_chars(number, number + sizeof(number), value).ptr;
  std::string text(number, end);
  if (text.find_first_of(".en") == std::string::npos) text += ".0";
  out << step << "," << text << "\r\n";  // csv.writer ends rows with \r\n
  if (!out) return absl::InternalError(absl::StrCat("csv_monitor: cannot write ", file));
  return absl::OkStatus();
}

}  // namespace ucp::runtime
