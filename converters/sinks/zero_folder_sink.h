// ZeroFolderSink: the ZeRO tag folder DeepSpeed saves after loading a checkpoint at a target
// topology (docs/reshard.md), from the ZeRO sink's input: the non-tensor trees and tensor runs
// read from a ZeRO folder or a UCP (converters/plan/zero12_input.h, zero3_input.h). A thin adapter
// over the planners PlanUcpToZero12 (ZeRO-0/1/2 inputs) and PlanZero3Reshard (ZeRO-3).
#pragma once

#include <variant>

#include "converters/plan/ucp_to_zero.h"
#include "converters/plan/zero12_input.h"
#include "converters/plan/zero3_input.h"
#include "converters/sinks/sink.h"

namespace ucp::converters::sinks {

// What the readers build today: ZeRO-0/1/2 trees or ZeRO-3 trees.
using ZeroSinkInput = std::variant<plan::Zero12Input, plan::Zero3Input>;

class ZeroFolderSink final : public Sink<ZeroSinkInput> {
 public:
  // target.use_data_before_expert_parallelism is taken from the input's ds_config.
  explicit ZeroFolderSink(plan::ReshardTarget target) : target_(std::move(target)) {}
  absl::string_view name() const override { return "zero"; }
  // Plan::files are relative to the tag folder. InvalidArgument for an infeasible target.
  absl::StatusOr<plan::Plan> Plan(const ZeroSinkInput& input) const override;

 private:
  plan::ReshardTarget target_;
};

// The model-states tree of the input (global_steps, ds_config), and the files its plan reads.
const formats::torch::Value* ModelRoot(const ZeroSinkInput& input);
const std::vector<std::shared_ptr<const formats::torch::TorchFile>>& InputFiles(
    const ZeroSinkInput& input);

}  // namespace ucp::converters::sinks
