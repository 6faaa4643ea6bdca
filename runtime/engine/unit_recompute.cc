#include "runtime/engine/unit_recompute.h"

#include <ATen/core/List.h>
#include <ATen/ops/empty.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "runtime/engine/engine.h"
#include "runtime/model/attention_cache.h"

namespace ucp::runtime {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Points the unit's parameters at whole tensors gathered from the partitions; `grad` makes them
// leaves that record gradients (the backward's re-run).
std::vector<int> Gather(Engine& e, int unit, bool grad) {
  std::vector<int> params = e.model().UnitParams(unit);
  for (int p : params) {
    at::Tensor full = e.GatherParam(p).detach();
    if (grad && e.IsTrainable(p)) full.set_requires_grad(true);
    e.model().params()[p].value = full;
  }
  return params;
}

void Release(Engine& e, const std::vector<int>& params) {
  for (int p : params) {
    if (e.IsTrainable(p)) e.model().params()[p].value = at::Tensor();
  }
}

// The unit's forward; with `selective` its attention outputs recorded into the context.
at::Tensor FirstForward(AutogradContext* ctx, Engine& e, int unit, const at::Tensor& in,
                        const at::Tensor& targets, bool selective) {
  AttentionCache cache;
  at::Tensor out;
  {
    std::optional<AttentionCacheScope> scope;
    if (selective) scope.emplace(cache, AttentionCache::Mode::kRecord);
    out = e.model().Unit(unit, in, targets);
  }
  ctx->save_for_backward({in, targets});
  ctx->saved_data["unit"] = static_cast<int64_t>(unit);
  ctx->saved_data["engine"] = reinterpret_cast<int64_t>(&e);
  ctx->saved_data["attention"] = c10::List<at::Tensor>(cache.outputs);
  return out;
}

// The re-run with autograd on and its gradients with respect to `inputs` (plus the unit's input
// when it is floating point, last); `in` is set to the detached input.
variable_list Rerun(AutogradContext* ctx, Engine& e, variable_list& inputs, at::Tensor& in,
                    const at::Tensor& grad_out) {
  const int unit = static_cast<int>(ctx->saved_data["unit"].toInt());
  AttentionCache cache;
  cache.outputs = ctx->saved_data["attention"].toTensorVector();
  ctx->saved_data.erase("attention");  // the replayed nodes own them from here
  const variable_list saved = ctx->get_saved_variables();
  in = saved[0].detach();
  const bool float_in = at::isFloatingType(in.scalar_type());
  if (float_in) {
    in.set_requires_grad(true);
    inputs.push_back(in);
  }
  at::Tensor out;
  {
    at::AutoGradMode enable(true);
    std::optional<AttentionCacheScope> scope;
    if (!cache.outputs.empty()) scope.emplace(cache, AttentionCache::Mode::kReplay);
    out = e.model().Unit(unit, in, saved[1]);
  }
  return torch::autograd::grad({out}, inputs, {grad_out}, /*retain_graph=*/false,
                               /*create_graph=*/false, /*allow_unused=*/true);
}

Engine& EngineOf(AutogradContext* ctx) {
  return *reinterpret_cast<Engine*>(ctx->saved_data["engine"].toInt());
}

class GatheredUnit : public torch::autograd::Function<GatheredUnit> {
 public:
  static at::Tensor forward(AutogradContext* ctx, at::Tensor in, at::Tensor targets,
                            at::Tensor anchor, int64_t unit, int64_t engine, bool selective) {
    Engine& e = *reinterpret_cast<Engine*>(engine);
    const std::vector<int> params = Gather(e, static_cast<int>(unit), false);
    at::Tensor out = FirstForward(ctx, e, static_cast<int>(unit), in, targets, selective);
    Release(e, params);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    Engine& e = EngineOf(ctx);
    const std::vector<int> params =
        Gather(e, static_cast<int>(ctx->saved_data["unit"].toInt()), true);
    variable_list inputs;
    std::vector<int> trainable;
    for (int p : params) {
      if (e.IsTrainable(p)) {
        inputs.push_back(e.model().params()[p].value);
        trainable.push_back(p);
      }
    }
    at::Tensor in;
    variable_list grads = Rerun(ctx, e, inputs, in, grad_out[0]);
    {
      at::NoGradGuard no_grad;
      for (size_t k = 0; k < trainable.size(); ++k) e.AddParamGrad(trainable[k], grads[k]);
    }
    Release(e, params);
    at::Tensor grad_in = in.requires_grad() ? grads.back() : at::Tensor();
    return {grad_in, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// `params`: the unit's trainable parameters (leaves at ZeRO 0-2), inputs of the node so that
// autograd delivers their gradients.
class CheckpointedUnit : public torch::autograd::Function<CheckpointedUnit> {
 public:
  static at::Tensor forward(AutogradContext* ctx, at::Tensor in, at::Tensor targets,
                            at::Tensor anchor, at::TensorList params, int64_t unit, int64_t engine,
                            bool selective) {
    return FirstForward(ctx, *reinterpret_cast<Engine*>(engine), static_cast<int>(unit), in,
                        targets, selective);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    Engine& e = EngineOf(ctx);
    const int unit = static_cast<int>(ctx->saved_data["unit"].toInt());
    variable_list inputs = Trainable(e, unit);
    const size_t n = inputs.size();
    at::Tensor in;
    variable_list grads = Rerun(ctx, e, inputs, in, grad_out[0]);
    // One gradient per forward input: in, targets, anchor, each parameter, unit, engine,
    // selective.
    variable_list out = {in.requires_grad() ? grads.back() : at::Tensor(), at::Tensor(),
                         at::Tensor()};
    out.insert(out.end(), grads.begin(), grads.begin() + static_cast<std::ptrdiff_t>(n));
    out.resize(out.size() + 3);
    return out;
  }

  static variable_list Trainable(Engine& e, int unit) {
    variable_list out;
    for (int p : e.model().UnitParams(unit)) {
      const at::Tensor& v = e.model().params()[p].value;
      if (e.IsTrainable(p) && v.requires_grad()) out.push_back(v);
    }
    return out;
  }
};

// An empty input that requires grad: unit 0's input (tokens) does not, and autograd would not
// call the unit's backward otherwise.
const at::Tensor& Anchor() {
  static thread_local at::Tensor anchor = at::empty({0}).set_requires_grad(true);
  return anchor;
}

}  // namespace

at::Tensor RunGatheredUnit(Engine& engine, int unit, const at::Tensor& in,
                           const at::Tensor& targets, bool selective) {
  return GatheredUnit::apply(in, targets, Anchor(), static_cast<int64_t>(unit),
                             reinterpret_cast<int64_t>(&engine), selective);
}

at::Tensor RunCheckpointedUnit(Engine& engine, int unit, const at::Tensor& in,
                               const at::Tensor& targets, bool selective) {
  const variable_list params = CheckpointedUnit::Trainable(engine, unit);
  return CheckpointedUnit::apply(in, targets, Anchor(), at::TensorList(params),
                                 static_cast<int64_t>(unit), reinterpret_cast<int64_t>(&engine),
                                 selective);
}

}  // namespace ucp::runtime
