// The one place where absl::Status becomes a Python exception (STYLE.md "Errors"):
//   NotFound                                   → FileNotFoundError
//   InvalidArgument, FailedPrecondition, OutOfRange, AlreadyExists → ValueError
//   Unimplemented                              → NotImplementedError
//   DataLoss                                   → ucp.CorruptCheckpointError (a ValueError)
//   anything else                              → RuntimeError
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pybind11/pybind11.h"

namespace ucp::python {

// Creates ucp.CorruptCheckpointError in `m` (call once, from the module init).
void RegisterExceptions(pybind11::module_& m);

// Sets the Python error for a non-OK status and throws pybind11::error_already_set.
[[noreturn]] void ThrowStatus(const absl::Status& status);

inline void ThrowIfError(const absl::Status& status) {
  if (!status.ok()) ThrowStatus(status);
}

template <typename T>
T ValueOrThrow(absl::StatusOr<T> value) {
  if (!value.ok()) ThrowStatus(value.status());
  return *std::move(value);
}

}  // namespace ucp::python
