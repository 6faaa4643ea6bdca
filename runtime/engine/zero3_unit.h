// ZeRO-3's gather / release around one model unit (deepspeed-runtime.md §4.4): forward all-gathers
// the unit's parameters, runs the unit without recording a graph and releases them; backward
// gathers them again, re-runs the unit's forward with autograd on (so no whole parameter and
// none of the unit's activations live between forward and backward: only its input), takes the
// gradients and reduce-scatters each parameter's into this rank's partition (Engine::AddParamGrad).
// DeepSpeed keeps the activations and re-gathers only the parameters; the re-run costs one more
// forward per unit and gives the same numbers (the forward is deterministic).
#pragma once

#include <ATen/core/Tensor.h>

namespace ucp::runtime {

class Engine;

at::Tensor RunGatheredUnit(Engine& engine, int unit, const at::Tensor& in,
                           const at::Tensor& targets);

}  // namespace ucp::runtime
