// UcpFolderSink: the Universal Checkpoint folder DeepSpeed's ds_to_universal.py writes, from a
// ZeRO checkpoint's index (a thin adapter over PlanZeroToUcp, converters/sinks/ucp/zero_to_ucp.h).
#pragma once

#include "converters/deepspeed/checkpoint_index.h"
#include "converters/sinks/sink.h"
#include "converters/sinks/ucp/zero_to_ucp.h"

namespace ucp::converters::sinks {

class UcpFolderSink final : public Sink<deepspeed::CheckpointIndex> {
 public:
  explicit UcpFolderSink(sinks::ZeroToUcpOptions options) : options_(options) {}
  absl::string_view name() const override { return "ucp"; }
  absl::StatusOr<plan::Plan> Plan(const deepspeed::CheckpointIndex& index) const override {
    return sinks::PlanZeroToUcp(index, options_);
  }

 private:
  sinks::ZeroToUcpOptions options_;
};

}  // namespace ucp::converters::sinks
