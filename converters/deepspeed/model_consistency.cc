// CheckModelAgainstShards: the model-states files must come from the same run and step as the
// optimizer shards beside them (issue 16.2). Names and shapes are already tied by the indexers
// (param_shapes against each shard's fragments and partitions); this adds what they cannot see:
//   stage   ds_config.zero_optimization.stage must be the stage the shards were written by
//           (BF16_Optimizer: 0 or 1). Without ds_config: a ZeRO-1 shard set has no
//           frozen_param_shapes (DeepSpeed saves them from stage 2 on).
//   step    DeepSpeed counts global_steps once per engine step and the optimizer's `step` once
//           per step it was not skipped (skipped_steps: fp16 overflow), so a run that saves and
//           restores both keeps step == global_steps - skipped_steps. DeepSpeed's own loads can
//           raise `step` above that (a ZeRO-3 universal load counts the UCP's step again: the
//           fixtures' resume_dp* ZeRO-3 saves have step 11 at global step 8; a ZeRO-0 bf16 run
//           re-saved at ZeRO-2 has 6 at 5), never lower, except a resume with
//           load_optimizer_states=False, which restarts the optimizer. A shard step below
//           global_steps - skipped_steps means a model file from a later step or another run.
#include <optional>

#include "absl/strings/str_cat.h"
#include "converters/deepspeed/index_builder.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "ucp/source.h"

namespace ucp::converters::deepspeed::internal_ds {
using formats::torch::Value;
using formats::torch::ValueKind;
namespace keys = formats::deepspeed::keys;
using formats::deepspeed::AsZeroStage;
namespace {

std::optional<int64_t> IntKey(const Value& root, absl::string_view key) {
  const Value* v = root.Get(key);
  if (v == nullptr || !v->is(ValueKind::kInt)) return std::nullopt;
  return v->int_value();
}

// ds_config.zero_optimization.stage, when recorded (an int, or ZeroStageEnum(n)).
std::optional<int64_t> ConfigStage(const Value& model_root) {
  const Value* config = model_root.Get(keys::kDsConfig);
  const Value* zero =
      config != nullptr && config->is_dict() ? config->Get(keys::kZeroOptimization) : nullptr;
  const Value* stage = zero != nullptr && zero->is_dict() ? zero->Get("stage") : nullptr;
  if (stage == nullptr) return std::nullopt;
  absl::StatusOr<int> s = AsZeroStage(stage, "stage");
  if (!s.ok()) return std::nullopt;
  return *s;
}

absl::Status CheckStage(const CheckpointIndex& index) {
  const ZeroKind& t = index.kind;
  const CheckpointFile& shard = index.optim_file(0);
  for (int file : index.model_files) {
    const CheckpointFile& model = index.files[file];
    const std::string shards = absl::StrCat(shard.path, " is ZeRO-", t.zero_stage, " (",
                                            OptimizerWrapperName(t.wrapper), ")");
    if (std::optional<int64_t> stage = ConfigStage(model.root())) {
      const bool ok =
          t.wrapper == OptimizerWrapper::kBf16Optimizer ? *stage <= 1 : *stage == t.zero_stage;
      if (!ok) {
        return absl::FailedPreconditionError(
            absl::StrCat("model states from another run: ", model.path, " has ", keys::kDsConfig,
                         ".", keys::kZeroOptimization, ".stage ", *stage, ", but ", shards));
      }
      continue;
    }
    const Value* frozen = model.root().Get(keys::kFrozenParamShapes);
    if (t.zero_stage == 1 && frozen != nullptr && !frozen->is_none()) {
      return absl::FailedPreconditionError(
          absl::StrCat("model states from another run: ", model.path, " has ",
                       keys::kFrozenParamShapes, " (saved from ZeRO-2 on), but ", shards));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckStep(const CheckpointIndex& index) {
  if (index.flat_groups.empty()) return absl::OkStatus();
  const FlatGroupRank& rank = index.flat_groups[0].ranks[0];
  if (rank.step == nullptr || rank.step_file < 0) return absl::OkStatus();
  absl::StatusOr<double> step = ucp::ScalarValue(*index.files[rank.step_file].torch, *rank.step);
  // A step DeepSpeed would not write: the shards' own checks say so.
  if (!step.ok()) return absl::OkStatus();
  const CheckpointFile& model = index.model_file();
  const std::optional<int64_t> global_steps = IntKey(model.root(), keys::kGlobalSteps);
  if (!global_steps) return absl::OkStatus();
  const int64_t skipped = IntKey(model.root(), keys::kSkippedSteps).value_or(0);
  const double expected = static_cast<double>(*global_steps - skipped);
  if (*step >= expected) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "model states from another step: ", model.path, " has ", keys::kGlobalSteps, " ",
      *global_steps, skipped > 0 ? absl::StrCat(" (", skipped, " skipped)") : "",
      ", but the optimizer shards were saved at step ", *step, " (",
      index.files[rank.step_file].path, "); DeepSpeed's optimizer step is never below ",
      keys::kGlobalSteps, " - ", keys::kSkippedSteps,
      " unless the run was resumed with "
      "load_optimizer_states=False"));
}

}  // namespace

absl::Status CheckModelAgainstShards(const CheckpointIndex& index) {
  // ZeRO-0: the optimizer is in the model file.
  if (index.optim_files.empty()) return absl::OkStatus();
  UCP_RETURN_IF_ERROR(CheckStage(index));
  return CheckStep(index);
}

}  // namespace ucp::converters::deepspeed::internal_ds
