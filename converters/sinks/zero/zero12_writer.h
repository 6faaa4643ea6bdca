// The ZeRO-1/2 writer's internals (PlanZero12, zero_writers.h), shared by its two files:
//   zero12_writer.cc   optimizer shards, the model-states file, framing, the entry point;
//   zero12_experts.cc  AutoEP and native MoE expert files and metadata.
// Not an API: include only from those files.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "converters/plan/plan.h"
#include "converters/plan/storage_frames.h"
#include "converters/sinks/zero/zero_sink.h"
#include "converters/sinks/zero/zero_sink_input.h"
#include "formats/torch/pickle_value.h"
#include "ucp/shard_layout.h"

namespace ucp::converters::sinks::internal_zero12 {

using plan::Piece;
using plan::Plan;
using plan::PlanFile;
using plan::StorageFrames;

using formats::torch::StorageRef;
using formats::torch::TensorRef;
using formats::torch::Value;
using formats::torch::ValueArena;
using formats::torch::ValueKind;

class Planner {
 public:
  Planner(const ZeroSinkInput& in, const ZeroTarget& t, int stage)
      : in_(in),
        t_(t),
        topo_(t.topology),
        ep_(topo_.ep),
        edp_(topo_.edp()),
        stage_(stage),
        bf16_optimizer_(in.bf16_optimizer && stage_ == 1) {}
  absl::StatusOr<Plan> Run();

 private:
  absl::Status SliceRuns(const TensorRuns& runs, uint64_t begin, uint64_t length,
                         absl::string_view what, std::vector<Piece>* out) const {
    return plan::SliceRuns(runs, begin, length, in_.origin, what, out);
  }
  const Value* NewTensor(DType dtype, int64_t numel, int64_t storage_numel, bool requires_grad,
                         std::vector<Piece> pieces) {
    return frames_.NewTensor(dtype, numel, storage_numel, requires_grad, std::move(pieces));
  }
  // A whole-tensor source (ZeRO-0, memory, tp merge): the module's parameters as views of one
  // flat buffer per group.
  absl::Status Zero0FlatModule(Value* root);
  absl::Status ModuleWeight(const Value& module, int g, size_t i, std::vector<Piece>* pieces,
                            TensorRef* view);
  absl::StatusOr<const Value*> Partition(int g, int state, int rank, int64_t numel,
                                         bool requires_grad);
  absl::StatusOr<const Value*> OptimizerRoot(int rank);
  absl::StatusOr<const Value*> ModelRoot();
  // AutoEP (§7): ds_autoep_layers as global rank 0 saves them at the target ep.
  absl::StatusOr<const Value*> AutoepLayers(const Value* layers, absl::string_view what);
  absl::StatusOr<const Value*> ParamShapes(const Value* shapes, absl::string_view what);
  // layer_{L}_expert_{E}_mp_rank_00_model_states.pt: expert E's rows of the fused weights.
  absl::Status ExpertFiles(Plan* plan);
  // Native MoE: the source's expert files copied, or (from a UCP) rebuilt (native_moe_experts.h).
  absl::Status NativeExpertFiles(Plan* plan);
  // The dtype of the module's tensors (the lp weights), `fallback` when it has none.
  DType ModuleDtype(DType fallback) const;
  // An expert file's tensor: master elements of p's fp32 state from `byte_offset`, shaped `shape`,
  // in the module's dtype (cast lazily when it differs; the cast source is added to `plan`).
  absl::StatusOr<const Value*> ExpertRow(const SinkParam& p, uint64_t byte_offset,
                                         const Shape& shape, Plan* plan);
  const Value* FragmentAddress(int64_t numel, int64_t start);

  const ZeroSinkInput& in_;
  const ZeroTarget& t_;
  const ucp::Topology& topo_;
  const int ep_, edp_;
  const int stage_;                   // target ZeRO stage (1 or 2)
  const bool bf16_optimizer_;         // target wrapper is BF16_Optimizer (ZeRO-1 only)
  const Value* model_out_ = nullptr;  // the target's model-states root (ModelRoot)
  const Value* optimizer_template_ =
      nullptr;  // the optimizer's scalar keys (in_'s, or ZeRO-0's fresh ones)
  std::vector<ucp::ShardLayout> layouts_;  // per group, at the target
  ValueArena arena_;
  StorageFrames frames_{&arena_, &in_.storage_runs, &in_.origin};
  const Value* fragment_cls_ = nullptr;
};

}  // namespace ucp::converters::sinks::internal_zero12
