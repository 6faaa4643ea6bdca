// ZeroFolderSink: the ZeRO tag folder DeepSpeed saves after loading a checkpoint at a target
// topology (docs/reshard.md), from the ZeRO sink's input: one ZeroSinkInput per TP rank, read from
// a ZeRO folder or a UCP, or built from memory (converters/sinks/zero/zero_sink_input.h). A thin
// adapter over PlanZeroSink (converters/sinks/zero/zero_sink.h), the one ZeRO writer.
#pragma once

#include <vector>

#include "converters/sinks/sink.h"
#include "converters/sinks/zero/zero_sink.h"
#include "converters/sinks/zero/zero_sink_input.h"

namespace ucp::converters::sinks {

// One input per TP rank (one for tp 1).
using ZeroSinkInputs = std::vector<ZeroSinkInput>;

class ZeroFolderSink final : public Sink<ZeroSinkInputs> {
 public:
  explicit ZeroFolderSink(ZeroTarget target) : target_(std::move(target)) {}
  absl::string_view name() const override { return "zero"; }
  // Plan::files are relative to the tag folder; the plan's first sources are the input's files.
  // CheckZeroTarget's usage errors for an infeasible or absurd target.
  absl::StatusOr<plan::Plan> Plan(const ZeroSinkInputs& tp_ranks) const override {
    return PlanZeroSink(tp_ranks, target_);
  }

 private:
  ZeroTarget target_;
};

}  // namespace ucp::converters::sinks
