// MemoryCheckpoint: the ZeRO sink's input from memory, the C++ API the training runtime saves
// through (runtime save = in-memory source → ZeRO sink, docs/architecture.md). The caller describes
// the model and optimizer once (names, shapes, param groups, hyper-parameters, steps, the
// model-states skeleton with its client state) and serves tensor bytes through one callback; the
// sink plans the files DeepSpeed's save_checkpoint writes at the target (ZeroTarget: dp, ep, ZeRO
// stage) and the executor pulls the bytes, in bounded chunks, when it writes them.
//
//   MemoryCheckpoint ck;
//   ck.params = {{"embed.weight", Shape({V, D}), MemoryParamRole::kTrainable, 0}, ...};  // module
//   order ck.groups = {{hyper0, step0, {0, 2, ...}}, ...};  // flat order of each optimizer param
//   group ck.model_states = skeleton;   // the dict DeepSpeed's _save_checkpoint writes (see below)
//   ck.read = [&](int param, MemoryTensor which, uint64_t offset, absl::Span<std::byte> out) {...};
//   ZeroSinkInput in = ZeroSinkInputFromMemory(std::move(ck)).value();
//   Plan plan = PlanZeroSink(in, target).value();   // or pipelines::SaveZeroCheckpoint
//
// Every tensor is whole (not partitioned): the sink cuts it for the target with ShardLayout. Module
// tensors of trainable parameters become views of one flat buffer per param group, as DeepSpeed's
// ZeRO-1/2 module is (the ZeRO-0 → ZeRO-1/2 path of the sink). With `zero3` the input has
// ZeRO-3's trees instead and is written at ZeRO-3 (each parameter cut alone, per-rank files).
//
// AutoEP: when the skeleton has ds_autoep_layers (written as an autoep_size-1 run saves them:
// ep_size 1, every expert local), the fused expert weights <prefix>.w1/w2/w3 they name are whole
// [num_experts, ...] tensors, a group holding them is an expert group, and the sink cuts them
// for the target's autoep_size (expert files, EP-local param_shapes, ds_autoep_layers per rank).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "converters/sinks/zero/zero_sink_input.h"
#include "formats/base/buffer.h"

namespace ucp::converters::sinks {

enum class MemoryParamRole : uint8_t {
  kTrainable,  // in an optimizer param group: module weight + fp32 master, exp_avg, exp_avg_sq
  kFrozen,     // requires_grad False: module weight only (frozen_param_* at ZeRO-2)
  kBuffer,     // a module buffer (buffer_names)
  kTied,       // a module entry that is another parameter (shared_params): no bytes of its own
};

// The tensors the callback serves for a parameter.
enum class MemoryTensor : uint8_t { kWeight, kFp32, kExpAvg, kExpAvgSq };

struct MemoryParam {
  std::string name;  // module state_dict name
  Shape shape;
  MemoryParamRole role = MemoryParamRole::kTrainable;
  int group = -1;                    // kTrainable: index into MemoryCheckpoint::groups
  DType weight_dtype = DType::kF32;  // the module tensor (lp weight, buffer)
  std::string tied_to;               // kTied: the parameter it is
  bool shared_param = true;  // kTied: listed in shared_params (AutoEP's router alias is not)
};

struct MemoryGroup {
  // base optimizer param_groups[g] (lr, betas, eps, weight_decay, ...); 'params' is written as [g].
  const Value* hyperparameters = nullptr;
  const Value* step = nullptr;  // state[g]['step']: int, float or 0-dim tensor; nullptr: none
  std::vector<int> params;      // flat order: indices into MemoryCheckpoint::params (kTrainable)
};

// Copies `out.size()` bytes of tensor `which` of parameter `param` from byte `offset` (row-major,
// MemoryCheckpoint's dtypes) into `out`. Called from the executor's worker threads, concurrently.
using MemoryReadFn = std::function<absl::Status(int param, MemoryTensor which, uint64_t offset,
                                                absl::Span<std::byte> out)>;

struct MemoryCheckpoint {
  std::string name = "<memory>";     // names the input in messages and plan sources
  DType master_dtype = DType::kF32;  // fp32 masters
  DType state_dtype = DType::kF32;   // exp_avg, exp_avg_sq
  bool bf16_optimizer = false;       // written as BF16_Optimizer at a ZeRO-1 target
  // The ZeRO-3 layout (DeepSpeedZeroOptimizer_Stage3's trees, one sub-group per param group): the
  // input is then written at ZeRO-3 only; otherwise at ZeRO-1/2 only.
  bool zero3 = false;
  std::vector<MemoryParam> params;  // module state_dict order
  std::vector<MemoryGroup> groups;
  // The model-states dict with every key DeepSpeed writes, in its order (module, buffer_names,
  // optimizer, param_shapes, frozen_param_shapes, shared_params, frozen_param_fragments,
  // lr_scheduler, ..., ds_config, ds_version, client state). The sink fills `module` (keeping the
  // skeleton module's attributes, e.g. _metadata), buffer_names, param_shapes, shared_params,
  // optimizer (None), frozen_param_*, dp_world_size; the rest is written as given.
  const Value* model_states = nullptr;
  // The ZeRO wrapper's scalar keys (loss_scaler, dynamic_loss_scale, overflow, clip_grad,
  // ds_version); nullptr: a fresh DeepSpeedZeroOptimizer's (static loss scale, clip_grad from
  // ds_config).
  const Value* optimizer_scalars = nullptr;
  // Bytes of the storages of tensors inside the Values above (0-dim step tensors, client state).
  absl::flat_hash_map<const StorageRef*, Buffer> storages;
  MemoryReadFn read;
  // Keeps the Values' arena alive as long as the input (and the plan built from it).
  std::shared_ptr<const void> owner;
};

// InvalidArgument (naming the parameter or group) for an inconsistent description: duplicate or
// unsafe names, a trainable parameter in no group or in two, a tied alias of an unknown parameter,
// a tensor inside a Value whose storage has no bytes, a missing skeleton or callback.
absl::StatusOr<ZeroSinkInput> ZeroSinkInputFromMemory(MemoryCheckpoint checkpoint);

}  // namespace ucp::converters::sinks
