// DeepSpeed's csv_monitor (deepspeed-runtime.md §10.1): rank 0 appends `step,value` rows, step =
// global samples, to <output_path>/<job_name>/<event>.csv, one file per event ("Train/Samples/lr"
// → Train_Samples_lr.csv) whose first row is `step,<last component of the event name>`. The engine
// logs Train/Samples/lr at each optimizer step; ucp train also logs Train/Samples/train_loss (what
// DeepSpeed's pipeline engine logs; its plain engine leaves the loss to user code).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace ucp::runtime {

class CsvMonitor {
 public:
  // Inactive when `output_path` and `job_name` are empty (csv_monitor.enabled false).
  CsvMonitor(std::string output_path, std::string job_name);
  bool active() const { return !folder_.empty(); }
  absl::Status Write(const std::string& event, int64_t step, double value);

 private:
  std::string folder_;
};

}  // namespace ucp::runtime
