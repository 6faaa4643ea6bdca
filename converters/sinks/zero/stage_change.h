// ZeRO-1 <-> ZeRO-2 stage changes in the ZeRO sink (docs/reshard.md "Changing the ZeRO stage"):
// the few keys in which DeepSpeed's saves at the two stages differ, taken from real DeepSpeed
// resaves of one UCP at both stages (fixtures/deepspeed_stage):
//   * optimizer_state_dict.zero_stage: getattr(ZeroStageEnum, 'optimizer_states' | 'gradients');
//   * model states frozen_param_shapes / frozen_param_fragments: None at ZeRO-1; at ZeRO-2 the
//     frozen parameters' shapes and whole tensors (the module's own storages);
//   * BF16_Optimizer exists only at ZeRO-1: bf16 at ZeRO-2 is DeepSpeedZeroOptimizer, whose state
//     adds loss_scaler (static, scale 1.0), dynamic_loss_scale and overflow.
// ZeRO-3 is a different layout (partitioned module, per-rank model files): DeepSpeed's universal
// loader cannot cross it (see CheckStageChange).
// ZeRO-0 -> ZeRO-1/2 (from a ZeRO-0 folder): the model file loses `optimizer` and gains what ZeRO
// records (param_shapes, shared_params), and the ZeRO wrapper's scalars are those of a fresh
// DeepSpeedZeroOptimizer (Zero0OptimizerTemplate), as DeepSpeed's own save after loading the
// ZeRO-0 UCP at ZeRO-1/2 has them (fixtures/deepspeed_extra/s0_*/reshard_*).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "converters/sinks/zero/zero_sink_input.h"
#include "formats/torch/pickle_value.h"

namespace ucp::converters::sinks {

// OK when a ZeRO-`from` checkpoint can be written at ZeRO-`to`; otherwise InvalidArgument with
// the reason (naming `origin`).
absl::Status CheckStageChange(absl::string_view origin, int from, int to);

// getattr(deepspeed.runtime.zero.config.ZeroStageEnum, '<member>'), as DeepSpeed pickles it.
const formats::torch::Value* ZeroStageEnumValue(formats::torch::ValueArena& arena, int stage);

// The static LossScaler a bf16 DeepSpeedZeroOptimizer saves: LossScaler() with
// {cur_scale: 1.0, dynamic: False}.
const formats::torch::Value* StaticLossScaler(formats::torch::ValueArena& arena);

// Edits the model-states dict `root` (a copy in `arena`) from stage `from` to stage `to`:
// frozen_param_shapes / frozen_param_fragments, and ds_config.zero_optimization.stage.
// Frozen parameters at ZeRO-1 are the module's tensors that are neither optimized (param_shapes),
// buffers, nor tied aliases (shared_params).
absl::Status RewriteModelStatesForStage(formats::torch::ValueArena& arena,
                                        formats::torch::Value* root, int from, int to,
                                        absl::string_view what);

// Model states of a whole-tensor input (ZeRO-0 or memory, zero_stage 0) as ZeRO-1/2 save them:
// optimizer None, param_shapes (one OrderedDict name → torch.Size per group, from `in`),
// shared_params (dict alias → stored name, from in.shared_params).
absl::Status RewriteZero0ModelStates(formats::torch::ValueArena& arena, formats::torch::Value* root,
                                     const ZeroSinkInput& in);

// The scalars of a DeepSpeedZeroOptimizer state that a ZeRO-0 run has not got: static loss scaler,
// dynamic_loss_scale and overflow False, clip_grad = ds_config gradient_clipping (0.0 if unset),
// ds_version of the model file.
const formats::torch::Value* Zero0OptimizerTemplate(formats::torch::ValueArena& arena,
                                                    const formats::torch::Value& model_root);

// A torch param group (hyper-parameters, then 'params': [indices]) as ZeRO's base optimizer
// holds it: the same keys in order, 'params' = [g] (one flat partition per group; appended when
// the group has no 'params').
absl::StatusOr<const formats::torch::Value*> Zero0ParamGroup(formats::torch::ValueArena& arena,
                                                             const formats::torch::Value* group,
                                                             int g, absl::string_view what);

}  // namespace ucp::converters::sinks
