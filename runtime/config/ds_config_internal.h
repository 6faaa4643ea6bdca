// Shared by ds_config.cc and ds_config_zero.cc only; not part of the library's interface.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "runtime/config/ds_config.h"
#include "runtime/config/json_fields.h"

namespace ucp::runtime::internal_ds_config {

inline constexpr char kWhat[] = "ds_config";

inline absl::Status Invalid(absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(kWhat, ": ", message));
}

// A key DeepSpeed knows whose effect (with this value) ucp does not reproduce.
inline absl::Status NotImplemented(absl::string_view path, absl::string_view detail) {
  return absl::UnimplementedError(
      absl::StrCat(kWhat, ": `", path, "` (", detail, ") is not implemented by ucp train"));
}

// zero_optimization (and the deprecated boolean form).
absl::Status ParseZeroOptimization(StrictObject& root, TrainConfig& c);
// sequence_parallel_size, data_parallel_size, tensor_parallel, expert_parallel,
// use_data_before_expert_parallelism, compile.
absl::Status ParseParallelism(StrictObject& root, int world, TrainConfig& c);

}  // namespace ucp::runtime::internal_ds_config
