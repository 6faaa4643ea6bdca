// The allow-list of pickle globals (deepspeed-formats.md §2.6, §9.3, §9.4). A GLOBAL that is not
// listed here stops the load with an error naming `module.qualname`; listed globals are never
// imported or called: each has a role that the VM interprets structurally.
#pragma once

#include <optional>

#include "absl/strings/string_view.h"

namespace ucp::formats::torch {

enum class GlobalRole : uint8_t {
  kRebuildTensorV2,            // torch._utils._rebuild_tensor_v2
  kRebuildTensorV3,            // torch._utils._rebuild_tensor_v3
  kRebuildParameter,           // torch._utils._rebuild_parameter
  kRebuildParameterWithState,  // torch._utils._rebuild_parameter_with_state
  kRebuildFromTypeV2,          // torch._tensor._rebuild_from_type_v2
  kOrderedDict,                // collections.OrderedDict
  kSet,                        // builtins.set
  kFrozenSet,                  // builtins.frozenset
  kCodecsEncode,               // _codecs.encode (protocol-2 bytes)
  kBytes,                      // builtins.bytes (protocol-2 empty bytes)
  kGetattr,                    // builtins.getattr, only on an allowed class (enum by name)
  kStorageType,                // torch.FloatStorage, ... (persistent-id tag)
  kDType,                      // torch.float32, ... (a value, e.g. DynamicLossScaler.dtype)
  kClass,                      // an allowed class: instances become kObject records
};

// `module` as written in the pickle ("__builtin__" and "builtins" are the same).
std::optional<GlobalRole> LookupGlobal(absl::string_view module, absl::string_view name);

}  // namespace ucp::formats::torch
