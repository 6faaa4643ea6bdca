// The ZeRO-0 writer of the ZeRO sink: the one mp_rank_00_model_states.pt DeepSpeed's
// save_checkpoint writes when no ZeRO stage runs (deepspeed-runtime.md §4.1, §4.8): the whole
// module and, under `optimizer`,
//   fp32: the torch optimizer's own state_dict: state[i] = {step, exp_avg, exp_avg_sq} of the i-th
//     parameter in param-group order (whole tensors), param_groups with their `params` index lists;
//   bf16 (a bf16 module): FP16_Optimizer's {dynamic_loss_scale False, cur_scale 1.0, cur_iter
//     (= global_steps), optimizer_state_dict (the above), fp32_groups (each group's fp32 masters,
//     whole, requires_grad)}.
// Written from a whole-tensor input (the runtime's memory at stage 0, a ZeRO-0 folder):
// param_shapes, shared_params and the frozen_param_* keys stay None, as DeepSpeed's ZeRO-0 save has
// them (fixtures/deepspeed_extra/s0_*). AutoEP (§1.8;
// fixtures/deepspeed_extra/autoep_mixtral_s0_*): each EP rank e of the target's autoep_size has its
// own torch optimizer, whose expert states are EP rank e's local experts [E / ep, ...]:
// expp_rank_<e>_mp_rank_00_optim_states.pt = {'optimizer': it}; the model file's `optimizer` is EP
// rank 0's, its module leaves the experts out, ds_autoep_layers (and universal_checkpoint_info's
// copy) are global rank 0's at the target; layer_<L>_expert_<E> files hold the expert weights in
// the module's dtype.
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

// Elements [offset, offset + numel(shape)) of state `state` (0 fp32, 1 exp_avg, 2 exp_avg_sq) of
// parameter p as a tensor of `shape`.
absl::StatusOr<const Value*> StateTensor(const ZeroSinkInput& in, plan::StorageFrames& frames,
                                         ValueArena& arena, const SinkParam& p, int state,
                                         int64_t offset, const Shape& shape, bool requires_grad) {
  const TensorRuns& runs = p.states[state];
  UCP_ASSIGN_OR_RETURN(int64_t numel, shape.NumElements());
  const uint64_t elem = DTypeSize(runs.dtype);
  std::vector<Piece> pieces;
  UCP_RETURN_IF_ERROR(plan::SliceRuns(runs, static_cast<uint64_t>(offset) * elem,
                                      static_cast<uint64_t>(numel) * elem, in.origin,
                                      absl::StrCat("'", p.name, "'"), &pieces));
  TensorRef t;
  t.storage = frames.NewStorage(runs.dtype, numel, std::move(pieces));
  t.dtype = runs.dtype;
  t.shape = shape;
  t.stride = shape.ContiguousStrides();
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

class Zero0Planner {
 public:
  Zero0Planner(const ZeroSinkInput& in, const ZeroTarget& target) : in_(in), target_(target) {}

  absl::StatusOr<plan::Plan> Run() {
    plan::Plan plan = internal_sink::NewSinkPlan(in_, target_, 0, "torch optimizer (no ZeRO)");
    frames_.ReserveZeros(&plan);
    const std::string what = absl::StrCat(in_.origin, ": model states");
    UCP_ASSIGN_OR_RETURN(const Value* src, ids::AsDict(in_.model_root, what));
    for (const SinkParam& p : in_.params) {
      bf16_ = bf16_ || Bf16Module(*src, p);
      experts_ = experts_ || p.expert;
    }
    if (const Value* g = src->Get(keys::kGlobalSteps); g != nullptr && !g->is_none()) {
      UCP_ASSIGN_OR_RETURN(steps_, ids::AsInt(g, absl::StrCat(what, ": global_steps")));
    }
    const int ep = experts_ ? target_.topology.ep : 1;
    std::vector<const Value*> optimizers;
    for (int e = 0; e < ep; ++e) {
      UCP_ASSIGN_OR_RETURN(const Value* o, Optimizer(e));
      optimizers.push_back(o);
    }
    Value* root = plan::CopyDict(arena_, *src);
    plan::SetOrReplace(arena_, root, keys::kOptimizer, optimizers[0]);
    if (src->Get(keys::kDpWorldSize) != nullptr)
      plan::SetOrReplace(arena_, root, keys::kDpWorldSize, arena_.Int(target_.topology.dp));
    if (target_.ds_config != nullptr)
      plan::SetOrReplace(arena_, root, keys::kDsConfig, target_.ds_config);
    if (experts_) UCP_RETURN_IF_ERROR(AutoEpRecords(*src, root, what));
    UCP_ASSIGN_OR_RETURN(plan::PlanFile mf,
                         frames_.Frame(formats::deepspeed::ModelStatesFileName(in_.mp_rank),
                                       plan::FileRole::kModelRewrite, *root));
    plan.files.push_back(std::move(mf));
    if (experts_) {
      UCP_RETURN_IF_ERROR(internal_sink::AutoEpExpertFiles(in_, arena_, frames_, &plan));
      for (int e = 0; e < ep; ++e) {
        Value* f = arena_.Dict();
        arena_.SetItem(f, keys::kOptimizer, optimizers[e]);
        UCP_ASSIGN_OR_RETURN(
            plan::PlanFile of,
            frames_.Frame(absl::StrCat(keys::kExppRankPrefix, e, "_mp_rank_",
                                       absl::Dec(in_.mp_rank, absl::kZeroPad2), "_optim_states.pt"),
                          plan::FileRole::kOptimizerState, *f));
        plan.files.push_back(std::move(of));
      }
    }
    frames_.FinishZeros(&plan);
    UCP_RETURN_IF_ERROR(plan::ValidatePlan(plan));
    return plan;
  }

 private:
  // EP rank e's torch optimizer state_dict (wrapped in FP16_Optimizer's for a bf16 module).
  absl::StatusOr<const Value*> Optimizer(int e) {
    Value* state = arena_.Dict();
    Value* groups = arena_.List();
    Value* fp32_groups = arena_.List();
    int64_t index = 0;
    for (size_t g = 0; g < in_.groups.size(); ++g) {
      const SinkGroup& group = in_.groups[g];
      if (group.hyperparameters == nullptr || !group.hyperparameters->is_dict()) {
        return absl::DataLossError(
            absl::StrCat(in_.origin, ": no param_groups entry for group ", g));
      }
      Value* indices = arena_.List();
      Value* masters = arena_.List();
      for (int pi : group.params) {
        const SinkParam& p = in_.params[pi];
        if (p.states[0].dtype != DType::kF32) {
          return absl::UnimplementedError(
              absl::StrCat(in_.origin, ": '", p.name, "': ZeRO-0 masters must be fp32"));
        }
        // An expert weight: EP rank e's local experts at the target.
        Shape shape = p.shape;
        int64_t offset = 0;
        if (p.expert) {
          const int64_t local = internal_sink::TargetNumel(in_, p, target_);
          std::vector<int64_t> dims(p.shape.dims().begin(), p.shape.dims().end());
          dims[0] = p.num_experts / target_.topology.ep;
          shape = Shape(dims);
          offset = e * local;
        }
        UCP_ASSIGN_OR_RETURN(const Value* master,
                             StateTensor(in_, frames_, arena_, p, 0, offset, shape, !experts_));
        ValueArena::Append(masters, master);
        Value* s = arena_.Dict();
        if (group.step != nullptr) arena_.SetItem(s, keys::kStep, group.step);
        UCP_ASSIGN_OR_RETURN(const Value* avg,
                             StateTensor(in_, frames_, arena_, p, 1, offset, shape, false));
        UCP_ASSIGN_OR_RETURN(const Value* avg_sq,
                             StateTensor(in_, frames_, arena_, p, 2, offset, shape, false));
        arena_.SetItem(s, keys::kExpAvg, avg);
        arena_.SetItem(s, keys::kExpAvgSq, avg_sq);
        ValueArena::SetItem(state, arena_.Int(index), s);
        ValueArena::Append(indices, arena_.Int(index++));
      }
      Value* pg = plan::CopyDict(arena_, *group.hyperparameters);
      plan::SetOrReplace(arena_, pg, keys::kParams, indices);
      ValueArena::Append(groups, pg);
      ValueArena::Append(fp32_groups, masters);
    }
    Value* torch_state = arena_.Dict();
    arena_.SetItem(torch_state, keys::kState, state);
    arena_.SetItem(torch_state, keys::kParamGroups, groups);
    if (!bf16_) return torch_state;
    Value* optimizer = arena_.Dict();  // FP16_Optimizer with bf16: loss scale fixed at 1
    arena_.SetItem(optimizer, keys::kDynamicLossScale, arena_.Bool(false));
    arena_.SetItem(optimizer, "cur_scale", arena_.Float(1.0));
    arena_.SetItem(optimizer, "cur_iter", arena_.Int(steps_));
    arena_.SetItem(optimizer, keys::kOptimizerStateDict, torch_state);
    arena_.SetItem(optimizer, "fp32_groups", fp32_groups);
    return optimizer;
  }

  // ds_autoep_layers and universal_checkpoint_info as global rank 0 saves them at the target.
  absl::Status AutoEpRecords(const Value& src, Value* root, const std::string& what) {
    const Value* layers = src.Get(keys::kDsAutoepLayers);
    if (layers == nullptr || layers->is_none()) return absl::OkStatus();
    const ucp::Topology& t = target_.topology;
    UCP_ASSIGN_OR_RETURN(const Value* nl, plan::RewriteAutoepLayers(
                                              arena_, layers, t.ep, t.edp(), 0, 0,
                                              absl::StrCat(what, ": ", keys::kDsAutoepLayers)));
    plan::SetOrReplace(arena_, root, keys::kDsAutoepLayers, nl);
    if (const Value* info = src.Get(keys::kUniversalCheckpointInfo);
        info != nullptr && info->is_dict()) {
      Value* ni = plan::CopyDict(arena_, *info);
      plan::SetOrReplace(arena_, ni, keys::kExpertParameterPatterns,
                         arena_.List({arena_.Str(".*\\.experts\\.w[123]$")}));
      plan::SetOrReplace(arena_, ni, keys::kDsAutoepLayers, nl);
      plan::SetOrReplace(arena_, root, keys::kUniversalCheckpointInfo, ni);
    }
    return absl::OkStatus();
  }

  const ZeroSinkInput& in_;
  const ZeroTarget& target_;
  ValueArena arena_;
  plan::StorageFrames frames_{&arena_, &in_.storage_runs, &in_.origin};
  bool bf16_ = false, experts_ = false;
  int64_t steps_ = 0;
};

}  // namespace

namespace internal_sink {

absl::StatusOr<plan::Plan> PlanZero0(const ZeroSinkInput& in, const ZeroTarget& target) {
  if (!in.module_per_tensor || in.zero_stage != 0) {
    return absl::UnimplementedError(
        absl::StrCat(in.origin, ": a ZeRO-0 checkpoint is written from whole tensors only"));
  }
  return Zero0Planner(in, target).Run();
}

}  // namespace internal_sink
}  // namespace ucp::converters::sinks
