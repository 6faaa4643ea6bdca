// Model: what the engine needs of a network, nothing more. A model is a list of parameters (in
// PyTorch's named_parameters order, which is DeepSpeed's flattening order) and a chain of units:
// unit 0 takes the tokens, each next unit the previous one's output, the last one returns the
// scalar fp32 loss. ZeRO 0-2 run the chain under plain autograd; ZeRO-3 runs each unit with only
// its own parameters gathered (engine/unit_recompute.h), so a unit must read parameters only
// through param(i).value, and only those listed by UnitParams.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/config/tp_partition.h"
#include "runtime/model/tp_ops.h"

namespace ucp::runtime {

enum class ParamKind : uint8_t { kTrainable, kFrozen, kBuffer };

struct ModelParam {
  std::string name;  // module state_dict name
  std::vector<int64_t> shape;
  ParamKind kind = ParamKind::kTrainable;
  // The full tensor the forward reads (compute dtype). Stages 0-2: always there (a view into the
  // group's flat buffer); stage 3: only while its unit is gathered.
  at::Tensor value;
  // This rank's slice of the checkpoint's (whole) tensor: along slice_dim, elements
  // [slice_begin, slice_begin + shape[slice_dim]) of slice_full; -1: the whole tensor. AutoEP
  // expert weights (experts.w1/w2/w3): dim 0, this rank's experts of num_experts; AutoTP: the
  // column (0) or row (1) cut, tp_sharded (its gradient norm counts on every TP rank).
  int slice_dim = -1;
  int64_t slice_begin = 0, slice_full = 0;
  // AutoTP sub-parameter split (a partition_config `shape`): this rank's pieces along slice_dim,
  // (begin, length) in the whole tensor, concatenated in order as DeepSpeed does ([gate_r ;
  // up_r]); empty: the one piece [slice_begin, slice_begin + shape[slice_dim]).
  std::vector<std::pair<int64_t, int64_t>> pieces;
  int64_t num_experts = 0;  // AutoEP expert weight: the layer's experts (0: not one)
  bool tp_sharded = false;
  // AutoTP: the parameter's split over every TP rank (the save publishes it in
  // universal_checkpoint_info); null when AutoTP did not split it.
  std::shared_ptr<const TpParamSplit> tp_split;
  bool expert() const { return num_experts > 0; }
  // One contiguous range of the whole tensor along slice_dim (dim-0 slices read as one range).
  bool one_piece() const { return pieces.size() <= 1; }
  std::vector<int64_t> global_shape() const {
    std::vector<int64_t> g = shape;
    if (slice_dim >= 0) g[static_cast<size_t>(slice_dim)] = slice_full;
    return g;
  }
  // The slice of a whole (global-shape) tensor this rank holds.
  at::Tensor Slice(const at::Tensor& whole) const;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// A module state_dict entry that is another parameter (a tied output head).
struct TiedAlias {
  std::string alias, target;
  // DeepSpeed lists it in shared_params; AutoEP's router alias (mlp.gate → mlp.router) it does
  // not (a second module path of one submodule, not a tied parameter).
  bool shared_param = true;
};

class Model {
 public:
  virtual ~Model() = default;

  std::vector<ModelParam>& params() { return params_; }
  const std::vector<ModelParam>& params() const { return params_; }
  int Find(const std::string& name) const;  // -1 when absent (a hash lookup: forwards call it)
  const std::vector<TiedAlias>& tied() const { return tied_; }
  // The module's state_dict keys in order (parameters, aliases, buffers).
  const std::vector<std::string>& state_dict_order() const { return state_dict_order_; }
  // Every submodule name ("" for the root) for state_dict's _metadata, in named_modules order.
  const std::vector<std::string>& module_names() const { return module_names_; }
  // The 2-D-and-up weights: the "decay" param group (biases and norms are "no_decay").
  static bool IsDecay(const ModelParam& p) { return p.shape.size() >= 2; }

  // The tensor-parallel group the model's AutoTP collectives run over (models without AutoTP
  // ignore it).
  virtual void SetTpGroup(const TpGroup& tp) { (void)tp; }
  // The sequence-parallel group (AutoSP / Ulysses): the forward sees this rank's S/P positions
  // and exchanges around attention (models without it ignore it).
  virtual void SetSpGroup(const TpGroup& sp) { (void)sp; }

  virtual std::string type() const = 0;
  virtual int num_units() const = 0;
  virtual std::vector<int> UnitParams(int unit) const = 0;
  // unit 0: `in` = tokens [B, T] (int64); last unit: returns the loss against `targets` [B, T].
  virtual at::Tensor Unit(int unit, const at::Tensor& in, const at::Tensor& targets) = 0;
  // Seeded initial values (fp32, full tensors), identical at every topology: param i's tensor.
  virtual at::Tensor InitialValue(int param, uint64_t seed) const = 0;

 protected:
  // Registers the next parameter (named_parameters order); returns its index.
  int AddParam(std::string name, std::vector<int64_t> shape,
               ParamKind kind = ParamKind::kTrainable);

  std::vector<ModelParam> params_;
  std::unordered_map<std::string, int> index_;  // name → index into params_
  std::vector<TiedAlias> tied_;
  std::vector<std::string> state_dict_order_;
  std::vector<std::string> module_names_;
};

}  // namespace ucp::runtime
