#include "ucp/ucp_layout.h"

#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "formats/base/status.h"

namespace ucp {

using formats::torch::TensorRef;

absl::Status ValidateParamName(absl::string_view name) {
  const bool bad = name.empty() || name == "." || name == ".." ||
                   name.find_first_of(absl::string_view("/\\\0", 3)) != absl::string_view::npos;
  if (bad) {
    return absl::InvalidArgumentError(
        absl::StrCat("parameter name '", absl::CEscape(name),
                     "' cannot be a folder under zero/ (empty, '.', '..', "
                     "or a '/', '\\' or NUL in it)"));
  }
  return absl::OkStatus();
}

std::string ParamStatePath(absl::string_view param, absl::string_view state) {
  return absl::StrCat(kZeroDir, "/", param, "/", state, ".pt");
}

std::string OptimizerStatePath() { return absl::StrCat(kZeroDir, "/", kOptimizerStateFile); }

std::string ArchiveRootFor(absl::string_view relative_path) {
  const size_t slash = relative_path.rfind('/');
  absl::string_view base =
      slash == absl::string_view::npos ? relative_path : relative_path.substr(slash + 1);
  const size_t dot = base.rfind('.');
  if (dot != absl::string_view::npos && dot > 0) base = base.substr(0, dot);
  return std::string(base);
}

absl::StatusOr<ParamStateTree> BuildParamStateTree(ValueArena& arena, const ParamStateSpec& spec) {
  UCP_ASSIGN_OR_RETURN(const int64_t numel, spec.shape.NumElements());
  if (numel > spec.storage_numel) {
    return absl::InvalidArgumentError(absl::StrCat("tensor of shape ", spec.shape.ToString(),
                                                   " needs ", numel, " elements, its storage has ",
                                                   spec.storage_numel));
  }
  StorageRef storage;
  storage.key = "0";
  storage.dtype = spec.dtype;
  storage.location = "cpu";
  storage.numel = spec.storage_numel;
  const StorageRef* storage_ref = arena.NewStorage(std::move(storage));

  TensorRef tensor;
  tensor.storage = storage_ref;
  tensor.dtype = spec.dtype;
  tensor.storage_offset = 0;
  tensor.shape = spec.shape;
  tensor.stride = spec.shape.ContiguousStrides();
  tensor.requires_grad = spec.requires_grad;
  const Value* param = arena.Tensor(std::move(tensor));

  switch (spec.form) {
    case ParamFileForm::kRawTensor: return ParamStateTree{param, storage_ref};
    case ParamFileForm::kDict: {
      Value* dict = arena.Dict();
      if (spec.sub_param_shape != nullptr)
        arena.SetItem(dict, "sub_param_shape", spec.sub_param_shape);
      if (spec.cat_dim) arena.SetItem(dict, kCatDimKey, arena.Int(*spec.cat_dim));
      if (spec.n_sub_params)
        arena.SetItem(dict, kParamNSubParamsKey, arena.Int(*spec.n_sub_params));
      if (spec.vocab_tensor) arena.SetItem(dict, kVocabTensorKey, arena.Bool(true));
      arena.SetItem(dict, kParamKey, param);
      return ParamStateTree{dict, storage_ref};
    }
    case ParamFileForm::kExpertDict: {
      // DeepSpeed's key order (autoep_universal.py): param, cat_dim, is_expert_param,
      // ep_num_experts.
      Value* dict = arena.Dict();
      arena.SetItem(dict, kParamKey, param);
      arena.SetItem(dict, kCatDimKey, arena.Int(0));
      arena.SetItem(dict, kIsExpertParamKey, arena.Bool(true));
      arena.SetItem(dict, kEpNumExpertsKey, arena.Int(spec.ep_num_experts));
      return ParamStateTree{dict, storage_ref};
    }
  }
  return absl::InternalError("unknown ParamFileForm");
}

}  // namespace ucp
