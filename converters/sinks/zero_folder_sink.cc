#include "converters/sinks/zero_folder_sink.h"

#include "converters/deepspeed/deepspeed_keys.h"
#include "converters/plan/stage_change.h"
#include "converters/plan/zero3_reshard.h"
#include "formats/base/status.h"

namespace ucp::converters::sinks {
namespace {

using formats::torch::Value;
using formats::torch::ValueKind;

bool UseDataBeforeExpertParallelism(const Value* model_root) {
  const Value* c = model_root != nullptr ? model_root->Get(deepspeed::keys::kDsConfig) : nullptr;
  const Value* v =
      c != nullptr && c->is_dict() ? c->Get("use_data_before_expert_parallelism") : nullptr;
  return v != nullptr && v->is(ValueKind::kBool) && v->bool_value();
}

}  // namespace

const Value* ModelRoot(const ZeroSinkInput& input) {
  return std::visit([](const auto& in) { return in.model_root; }, input);
}

const std::vector<std::shared_ptr<const formats::torch::TorchFile>>& InputFiles(
    const ZeroSinkInput& input) {
  return *std::visit([](const auto& in) { return &in.files; }, input);
}

absl::StatusOr<plan::Plan> ZeroFolderSink::Plan(const ZeroSinkInput& input) const {
  const bool data_before_ep = UseDataBeforeExpertParallelism(ModelRoot(input));
  if (const auto* in12 = std::get_if<plan::Zero12Input>(&input)) {
    plan::ReshardTarget target = target_;
    target.use_data_before_expert_parallelism = data_before_ep;
    return plan::PlanUcpToZero12(*in12, target);
  }
  const plan::Zero3Input& in3 = std::get<plan::Zero3Input>(input);
  UCP_RETURN_IF_ERROR(plan::CheckStageChange(in3.origin, 3, target_.zero_stage));
  plan::Zero3Target t3;
  t3.dp = target_.dp;
  t3.ep = target_.autoep_size;
  t3.use_data_before_expert_parallelism = data_before_ep;
  return plan::PlanZero3Reshard(in3, t3);
}

}  // namespace ucp::converters::sinks
