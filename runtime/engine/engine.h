// Engine: ZeRO stages 0-3 over one data-parallel Comm, as DeepSpeed runs them
// (deepspeed-runtime.md §4.1-4.4, docs/runtime.md):
//   0  every rank holds everything; gradients all-reduced (sum, then ÷ dp) at the boundary;
//   1  each optimizer param group is one flat buffer, zero padded to 2·dp and cut into dp equal
//      partitions (ucp::ShardLayout kFlat, the one description of that cut); a rank keeps the fp32
//      master and Adam moments of its partition only; gradients ÷ dp, all-reduced, each rank
//      keeps its slice; after the update the low-precision partitions are all-gathered;
//   2  as 1, and the gradients are reduced after every micro-batch, only the rank's partition
//      being kept (accumulated) between micro-batches;
//   3  every parameter cut alone (ShardLayout kPerParam); a unit's parameters are all-gathered
//      just for its forward and again for its backward (unit_recompute.h), then released.
// Activation checkpointing (any stage) re-runs each unit's forward in backward as well.
// AutoEP (§1.6-1.7): expert weights (ModelParam::expert) live in their own groups, partitioned
// over the expert-data-parallel group (the ranks holding the same experts) instead of all ranks;
// their gradients are reduced over it and divided by the whole world size (each already sums
// the tokens of its EP group), so the result is the average over every data-parallel rank.
// Gradient clipping and the overflow check follow §4.3 (norm of the partitions, all-reduced;
// clip = (norm + 1e-6) / max when > 1); Adam as adam.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/dist/comm.h"
#include "runtime/engine/adam.h"
#include "runtime/model/model.h"
#include "ucp/shard_layout.h"

namespace ucp::runtime {

struct EngineConfig {
  int stage = 0;
  at::ScalarType dtype = at::kFloat;  // the model (low-precision) dtype
  bool fp32_grad_accum = false;       // bf16 + data_types.grad_accum_dtype fp32 (BF16_Optimizer)
  bool check_overflow = false;        // skip steps with inf/nan gradients
  double gradient_clipping = 1.0;     // 0: off
  AdamStep adam;                      // hyper-parameters except lr/weight_decay/step (per group)
  int64_t gradient_accumulation_steps = 1;
  // Sequence parallelism at ZeRO 0-2 as DeepSpeed does it (§3.6): the gradients summed over all
  // dp * sp ranks are divided by dp only, (dp * sp) / sp_grad_quirk. 1: the exact mean.
  int sp_grad_quirk = 1;
  // Selective activation checkpointing (unit_recompute.h, §3.8): every unit's forward runs
  // again in backward, attention outputs kept; bitwise the same numbers.
  bool activation_checkpointing = false;
};

// An optimizer param group: its model parameters in flat order and its hyper-parameters.
struct OptimGroup {
  std::string name;
  double weight_decay = 0.0;
  std::vector<int> params;  // indices into Model::params()
  double step = 0;          // optimizer steps taken (state['step'])
  bool expert = false;      // AutoEP expert weights: partitioned and reduced over expert-DP
};

// The expert-parallel layout (DeepSpeed's default "E + D": EP groups of consecutive ranks,
// expert-DP groups of the ranks at the same place in theirs).
struct ExpertComms {
  Comm* ep = nullptr;   // the ranks that exchange tokens (hold different experts)
  Comm* edp = nullptr;  // the ranks that hold the same experts
  // use_data_before_expert_parallelism: EP groups strided by world / ep (expert_setup.h).
  bool data_first = false;
};

struct StepResult {
  double loss = 0;       // mean over ranks and micro-batches
  double grad_norm = 0;  // global L2 norm of the unscaled gradients (before clipping)
  bool skipped = false;  // overflow: no update
};

// Which tensor of a parameter (whole, unpartitioned) a save or load moves.
enum class StateTensor : uint8_t { kFp32, kExpAvg, kExpAvgSq };

class Engine {
 public:
  // `comm`: the data-parallel group (all ranks without AutoTP); `tp`: the tensor-parallel group
  // (AutoTP: slices of TP-sharded parameters; replicated ones count in the gradient norm once).
  Engine(Model& model, Comm& comm, EngineConfig config, std::vector<OptimGroup> groups,
         ExpertComms experts = {}, TpGroup tp = {});
  ~Engine();

  const EngineConfig& config() const { return config_; }
  const std::vector<OptimGroup>& groups() const { return groups_; }
  Model& model() { return model_; }
  Comm& comm() { return comm_; }
  int dp() const { return comm_.size(); }
  const TpGroup& tp() const { return tp_; }

  // Sets parameter `param`'s whole fp32 value (master and low-precision copy); for a trainable
  // one also its Adam moments (undefined tensors: zeros). Every rank passes the same tensors and
  // keeps what it owns.
  void SetParam(int param, const at::Tensor& fp32, const at::Tensor& exp_avg = {},
                const at::Tensor& exp_avg_sq = {});
  void SetGroupStep(int group, double step) { groups_[group].step = step; }
  // The element ranges [offset, offset + numel) of trainable parameter `param` whose fp32 master
  // and moments this rank holds (a load reads only these), and their setter; SetModule sets the
  // low-precision module tensor (and, at stage 0, the masters) from the whole fp32 value.
  std::vector<std::pair<int64_t, int64_t>> OwnedRanges(int param) const;
  void SetOwned(int param, StateTensor which, int64_t offset, const at::Tensor& values);
  void SetModule(int param, const at::Tensor& fp32);

  // One optimizer step over `micro_batches` (x, y pairs: this rank's rows), at learning rate lr.
  StepResult Step(const std::vector<std::pair<at::Tensor, at::Tensor>>& micro_batches, double lr);

  // Collective (every rank calls): every trainable parameter's whole `which` tensor (fp32), on
  // `root` only (undefined elsewhere and for other parameters). Root holds them all at once.
  std::vector<at::Tensor> GatherStates(StateTensor which, int root);
  // Collective: every parameter's whole module (low-precision) tensor, on `root` only.
  std::vector<at::Tensor> GatherModule(int root);

  // ZeRO-3 (unit_recompute.h): a parameter's whole tensor, all-gathered from the partitions (its
  // module tensor at other stages); and a gradient of the whole parameter, reduce-scattered into
  // this rank's gradient partition.
  at::Tensor GatherParam(int param);
  void AddParamGrad(int param, const at::Tensor& grad);
  bool IsTrainable(int param) const { return group_of_[param] >= 0; }

  // Bytes a rank holds for parameters and optimizer state (for the memory report).
  int64_t StateBytes() const;

 private:
  struct Group;
  void BuildGroups();
  at::Tensor UnitChainLoss(const at::Tensor& x, const at::Tensor& y);
  void ReduceGradients(bool boundary);
  double GradNormSquared();
  at::ScalarType GradDtype() const;
  Comm& GroupComm(int group) const;
  // Root gets an expert weight's global tensor from every EP rank's `local` one (collective).
  at::Tensor GatherExperts(const ModelParam& mp, const at::Tensor& local, int root);

  Model& model_;
  Comm& comm_;
  EngineConfig config_;
  ExpertComms experts_;
  TpGroup tp_;
  std::vector<OptimGroup> groups_;
  std::vector<std::unique_ptr<Group>> state_;
  std::vector<int> group_of_;  // per model param: its group, -1 if not trainable
  std::vector<int> index_in_;  // per model param: its index in its group's flat order
  int micro_ = 0;              // micro-batches since the last boundary
};

}  // namespace ucp::runtime
