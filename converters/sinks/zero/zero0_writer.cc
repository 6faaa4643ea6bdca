// The ZeRO-0 writer of the ZeRO sink: the one mp_rank_00_model_states.pt DeepSpeed's
// save_checkpoint writes when no ZeRO stage runs (deepspeed-runtime.md §4.1, §4.8): the whole
// module and, under `optimizer`,
//   fp32: the torch optimizer's own state_dict: state[i] = {step, exp_avg, exp_avg_sq} of the i-th
//     parameter in param-group order (whole tensors), param_groups with their `params` index lists;
//   bf16 (a bf16 module): FP16_Optimizer's {dynamic_loss_scale False, cur_scale 1.0, cur_iter
//     (= global_steps), optimizer_state_dict (the above), fp32_groups (each group's fp32 masters,
//     whole, requires_grad)}.
// Written from a whole-tensor input only (the runtime's memory at stage 0): param_shapes,
// shared_params and the frozen_param_* keys stay None, as DeepSpeed's ZeRO-0 save has them
// (fixtures/deepspeed_extra/s0_*).
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/plan/storage_frames.h"
#include "converters/plan/tree_edit.h"
#include "converters/sinks/zero/zero_writers.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/file_names.h"
#include "formats/deepspeed/value_access.h"

namespace ucp::converters::sinks {
namespace {

namespace keys = formats::deepspeed::keys;
namespace ids = formats::deepspeed;
using formats::torch::TensorRef;
using formats::torch::ValueArena;
using plan::Piece;

// A whole state (0 fp32, 1 exp_avg, 2 exp_avg_sq) of parameter p as a tensor of its shape.
absl::StatusOr<const Value*> WholeState(const ZeroSinkInput& in, plan::StorageFrames& frames,
                                        ValueArena& arena, const SinkParam& p, int state,
                                        bool requires_grad = false) {
  const TensorRuns& runs = p.states[state];
  UCP_ASSIGN_OR_RETURN(int64_t numel, p.shape.NumElements());
  std::vector<Piece> pieces;
  UCP_RETURN_IF_ERROR(plan::SliceRuns(runs, 0, static_cast<uint64_t>(numel) * DTypeSize(runs.dtype),
                                      in.origin, absl::StrCat("'", p.name, "'"), &pieces));
  TensorRef t;
  t.storage = frames.NewStorage(runs.dtype, numel, std::move(pieces));
  t.dtype = runs.dtype;
  t.shape = p.shape;
  t.stride = p.shape.ContiguousStrides();
  t.requires_grad = requires_grad;
  return arena.Tensor(std::move(t));
}

// True when the module holds parameter p in bf16 (a bf16 run: FP16_Optimizer at stage 0).
bool Bf16Module(const Value& root, const SinkParam& p) {
  const Value* module = root.Get(keys::kModule);
  const Value* t = module != nullptr ? module->Get(p.name) : nullptr;
  return t != nullptr && t->is(formats::torch::ValueKind::kTensor) &&
         t->tensor().dtype == DType::kBF16;
}

}  // namespace

namespace internal_sink {

absl::StatusOr<plan::Plan> PlanZero0(const ZeroSinkInput& in, const ZeroTarget& target) {
  if (!in.module_per_tensor || in.zero_stage != 0) {
    return absl::UnimplementedError(
        absl::StrCat(in.origin, ": a ZeRO-0 checkpoint is written from whole tensors only"));
  }
  ValueArena arena;
  plan::StorageFrames frames(&arena, &in.storage_runs, &in.origin);
  plan::Plan plan = NewSinkPlan(in, target, 0, "torch optimizer (no ZeRO)");
  frames.ReserveZeros(&plan);
  const std::string what = absl::StrCat(in.origin, ": model states");
  UCP_ASSIGN_OR_RETURN(const Value* src, ids::AsDict(in.model_root, what));
  Value* root = plan::CopyDict(arena, *src);
  Value* state = arena.Dict();
  Value* groups = arena.List();
  Value* fp32_groups = arena.List();
  bool bf16 = false;
  int64_t index = 0;
  for (size_t g = 0; g < in.groups.size(); ++g) {
    const SinkGroup& group = in.groups[g];
    if (group.hyperparameters == nullptr || !group.hyperparameters->is_dict()) {
      return absl::DataLossError(absl::StrCat(in.origin, ": no param_groups entry for group ", g));
    }
    Value* indices = arena.List();
    Value* masters = arena.List();
    for (int pi : group.params) {
      const SinkParam& p = in.params[pi];
      if (p.states[0].dtype != DType::kF32) {
        return absl::UnimplementedError(
            absl::StrCat(in.origin, ": '", p.name, "': ZeRO-0 masters must be fp32"));
      }
      bf16 = bf16 || Bf16Module(*src, p);
      UCP_ASSIGN_OR_RETURN(const Value* master, WholeState(in, frames, arena, p, 0, true));
      ValueArena::Append(masters, master);
      Value* s = arena.Dict();
      if (group.step != nullptr) arena.SetItem(s, keys::kStep, group.step);
      UCP_ASSIGN_OR_RETURN(const Value* avg, WholeState(in, frames, arena, p, 1));
      UCP_ASSIGN_OR_RETURN(const Value* avg_sq, WholeState(in, frames, arena, p, 2));
      arena.SetItem(s, keys::kExpAvg, avg);
      arena.SetItem(s, keys::kExpAvgSq, avg_sq);
      ValueArena::SetItem(state, arena.Int(index), s);
      ValueArena::Append(indices, arena.Int(index++));
    }
    Value* pg = plan::CopyDict(arena, *group.hyperparameters);
    plan::SetOrReplace(arena, pg, keys::kParams, indices);
    ValueArena::Append(groups, pg);
    ValueArena::Append(fp32_groups, masters);
  }
  Value* torch_state = arena.Dict();
  arena.SetItem(torch_state, keys::kState, state);
  arena.SetItem(torch_state, keys::kParamGroups, groups);
  Value* optimizer = torch_state;
  if (bf16) {  // FP16_Optimizer with bf16: loss scale fixed at 1
    int64_t steps = 0;
    if (const Value* g = src->Get(keys::kGlobalSteps); g != nullptr && !g->is_none()) {
      UCP_ASSIGN_OR_RETURN(steps, ids::AsInt(g, absl::StrCat(what, ": global_steps")));
    }
    optimizer = arena.Dict();
    arena.SetItem(optimizer, keys::kDynamicLossScale, arena.Bool(false));
    arena.SetItem(optimizer, "cur_scale", arena.Float(1.0));
    arena.SetItem(optimizer, "cur_iter", arena.Int(steps));
    arena.SetItem(optimizer, keys::kOptimizerStateDict, torch_state);
    arena.SetItem(optimizer, "fp32_groups", fp32_groups);
  }
  plan::SetOrReplace(arena, root, keys::kOptimizer, optimizer);
  if (src->Get(keys::kDpWorldSize) != nullptr)
    plan::SetOrReplace(arena, root, keys::kDpWorldSize, arena.Int(target.topology.dp));
  if (target.ds_config != nullptr)
    plan::SetOrReplace(arena, root, keys::kDsConfig, target.ds_config);
  UCP_ASSIGN_OR_RETURN(plan::PlanFile mf,
                       frames.Frame(formats::deepspeed::ModelStatesFileName(in.mp_rank),
                                    plan::FileRole::kModelRewrite, *root));
  plan.files.push_back(std::move(mf));
  frames.FinishZeros(&plan);
  UCP_RETURN_IF_ERROR(plan::ValidatePlan(plan));
  return plan;
}

}  // namespace internal_sink
}  // namespace ucp::converters::sinks
