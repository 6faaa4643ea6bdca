// Model units whose forward runs again in backward (deepspeed-runtime.md §3.8, §4.4;
// docs/runtime.md). Both run the unit's forward without recording a graph, keep only its input,
// and in backward re-run it with autograd on and back-propagate through the re-run. The forward
// is deterministic, so the gradients are bitwise those of the plain graph.
//   * RunGatheredUnit, ZeRO-3: the forward all-gathers the unit's parameters and releases them;
//     backward gathers them again and reduce-scatters each gradient into this rank's partition
//     (Engine::AddParamGrad). DeepSpeed keeps the activations and re-gathers only the
//     parameters; the re-run costs one more forward per unit.
//   * RunCheckpointedUnit, ZeRO 0-2 with activation checkpointing: the unit's trainable
//     parameters are inputs of the node, so their gradients reach them through autograd as the
//     plain graph's do (summed with a tied weight's other use, accumulated over micro-batches).
// `selective` (activation checkpointing's policy): the first forward records each attention
// output (model/attention_cache.h) and the re-run reuses it: the re-run recomputes the
// projections, norms and MLP, not attention, whose backward recomputes only its softmax (as a
// flash-attention backward does); nothing [T, T] lives from a unit's forward to its backward.
#pragma once

#include <ATen/core/Tensor.h>

namespace ucp::runtime {

class Engine;

at::Tensor RunGatheredUnit(Engine& engine, int unit, const at::Tensor& in,
                           const at::Tensor& targets, bool selective);
at::Tensor RunCheckpointedUnit(Engine& engine, int unit, const at::Tensor& in,
                               const at::Tensor& targets, bool selective);

}  // namespace ucp::runtime
