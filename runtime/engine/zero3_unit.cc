#include "runtime/engine/zero3_unit.h"

#include <ATen/ops/empty.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <vector>

#include "runtime/engine/engine.h"

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

class GatheredUnit : public torch::autograd::Function<GatheredUnit> {
 public:
  static at::Tensor forward(AutogradContext* ctx, at::Tensor in, at::Tensor targets,
                            at::Tensor anchor, int64_t unit, int64_t engine) {
    Engine& e = *reinterpret_cast<Engine*>(engine);
    const std::vector<int> params = Gather(e, static_cast<int>(unit), false);
    at::Tensor out = e.model().Unit(static_cast<int>(unit), in, targets);
    Release(e, params);
    ctx->save_for_backward({in, targets});
    ctx->saved_data["unit"] = unit;
    ctx->saved_data["engine"] = engine;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    Engine& e = *reinterpret_cast<Engine*>(ctx->saved_data["engine"].toInt());
    const int unit = static_cast<int>(ctx->saved_data["unit"].toInt());
    variable_list saved = ctx->get_saved_variables();
    const bool float_in = at::isFloatingType(saved[0].scalar_type());
    at::Tensor in = saved[0].detach();
    if (float_in) in.set_requires_grad(true);
    const std::vector<int> params = Gather(e, unit, true);
    variable_list inputs;
    std::vector<int> trainable;
    for (int p : params) {
      if (e.IsTrainable(p)) {
        inputs.push_back(e.model().params()[p].value);
        trainable.push_back(p);
      }
    }
    if (float_in) inputs.push_back(in);
    at::Tensor out;
    {
      at::AutoGradMode enable(true);
      out = e.model().Unit(unit, in, saved[1]);
    }
    variable_list grads = torch::autograd::grad({out}, inputs, {grad_out[0]},
                                                /*retain_graph=*/false, /*create_graph=*/false,
                                                /*allow_unused=*/true);
    {
      at::NoGradGuard no_grad;
      for (size_t k = 0; k < trainable.size(); ++k) e.AddParamGrad(trainable[k], grads[k]);
    }
    Release(e, params);
    at::Tensor grad_in = float_in ? grads.back() : at::Tensor();
    return {grad_in, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor RunGatheredUnit(Engine& engine, int unit, const at::Tensor& in,
                           const at::Tensor& targets) {
  // An empty input that requires grad: unit 0's input (tokens) does not, and autograd would not
  // call this unit's backward otherwise.
  static thread_local at::Tensor anchor = at::empty({0}).set_requires_grad(true);
  return GatheredUnit::apply(in, targets, anchor, static_cast<int64_t>(unit),
                             reinterpret_cast<int64_t>(&engine));
}

}  // namespace ucp::runtime
