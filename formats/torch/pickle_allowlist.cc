#include "formats/torch/pickle_allowlist.h"

#include <array>
#include <utility>

#include "formats/base/dtype.h"

namespace ucp::formats::torch {
namespace {

struct Entry {
  absl::string_view module;
  absl::string_view name;
  GlobalRole role;
};

constexpr std::array kEntries = {
    Entry{"torch._utils", "_rebuild_tensor_v2", GlobalRole::kRebuildTensorV2},
    Entry{"torch._utils", "_rebuild_tensor_v3", GlobalRole::kRebuildTensorV3},
    Entry{"torch._utils", "_rebuild_parameter", GlobalRole::kRebuildParameter},
    Entry{"torch._utils", "_rebuild_parameter_with_state", GlobalRole::kRebuildParameterWithState},
    Entry{"torch._tensor", "_rebuild_from_type_v2", GlobalRole::kRebuildFromTypeV2},
    Entry{"collections", "OrderedDict", GlobalRole::kOrderedDict},
    Entry{"builtins", "set", GlobalRole::kSet},
    Entry{"builtins", "frozenset", GlobalRole::kFrozenSet},
    Entry{"builtins", "bytes", GlobalRole::kBytes},
    Entry{"builtins", "getattr", GlobalRole::kGetattr},
    Entry{"_codecs", "encode", GlobalRole::kCodecsEncode},
    Entry{"torch", "UntypedStorage", GlobalRole::kStorageType},
    // Classes recorded as (class, args, state), never instantiated.
    Entry{"torch", "Size", GlobalRole::kClass},
    Entry{"torch", "Tensor", GlobalRole::kClass},
    Entry{"torch", "device", GlobalRole::kClass},
    Entry{"torch.nn.parameter", "Parameter", GlobalRole::kClass},
    Entry{"argparse", "Namespace", GlobalRole::kClass},
    Entry{"deepspeed.runtime.zero.config", "ZeroStageEnum", GlobalRole::kClass},
    Entry{"deepspeed.runtime.fp16.loss_scaler", "LossScaler", GlobalRole::kClass},
    Entry{"deepspeed.runtime.fp16.loss_scaler", "DynamicLossScaler", GlobalRole::kClass},
    Entry{"deepspeed.utils.tensor_fragment", "fragment_address", GlobalRole::kClass},
    Entry{"deepspeed.checkpoint.universal_checkpoint", "SubparamShape", GlobalRole::kClass},
    Entry{"numpy.core.multiarray", "_reconstruct", GlobalRole::kClass},
    Entry{"numpy", "ndarray", GlobalRole::kClass},
    Entry{"numpy", "dtype", GlobalRole::kClass},
};

}  // namespace

std::optional<GlobalRole> LookupGlobal(absl::string_view module, absl::string_view name) {
  if (module == "__builtin__") module = "builtins";
  for (const Entry& e : kEntries) {
    if (e.module == module && e.name == name) return e.role;
  }
  if (module == "torch") {
    if (name.size() > 7 && name.substr(name.size() - 7) == "Storage" &&
        DTypeFromTorchStorage(name)) {
      return GlobalRole::kStorageType;
    }
    if (DTypeFromTorchDTypeName(name)) return GlobalRole::kDType;
  }
  return std::nullopt;
}

}  // namespace ucp::formats::torch
