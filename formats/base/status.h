// Error handling for L0-L3: absl::Status / absl::StatusOr, two propagation macros, context
// helpers, errno mapping and UCP_CHECK for programmer bugs. Libraries never throw, exit or print.
//
// Codes: InvalidArgument (bad request), NotFound, AlreadyExists, DataLoss (corrupt or hostile
// input), Unimplemented, FailedPrecondition (layout mismatch), OutOfRange, ResourceExhausted,
// Internal, Unavailable (I/O).
#pragma once

#include <sstream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#define UCP_INTERNAL_CONCAT2(a, b) a##b
#define UCP_INTERNAL_CONCAT(a, b) UCP_INTERNAL_CONCAT2(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define UCP_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::absl::Status _ucp_status = (expr);       \
    if (!_ucp_status.ok()) return _ucp_status; \
  } while (0)

// Like UCP_RETURN_IF_ERROR, prefixing the message with `context` ("file x: key y").
#define UCP_RETURN_IF_ERROR_CTX(expr, context)                                \
  do {                                                                        \
    ::absl::Status _ucp_status = (expr);                                      \
    if (!_ucp_status.ok()) return ::ucp::WithContext(_ucp_status, (context)); \
  } while (0)

// `UCP_ASSIGN_OR_RETURN(auto x, F());` evaluates F() (an absl::StatusOr<T>); on error returns its
// status, else moves the value into `lhs`.
#define UCP_ASSIGN_OR_RETURN(lhs, rexpr) \
  UCP_INTERNAL_ASSIGN_OR_RETURN(UCP_INTERNAL_CONCAT(_ucp_statusor_, __LINE__), lhs, rexpr)
#define UCP_INTERNAL_ASSIGN_OR_RETURN(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                  \
  if (!tmp.ok()) return std::move(tmp).status();       \
  lhs = std::move(tmp).value()

namespace ucp {

// Returns `status` with "context: " prepended to its message (same code and payloads). OK stays OK.
absl::Status WithContext(const absl::Status& status, absl::string_view context);

// Usage errors: requests that cannot succeed whatever the input files hold (an option value, an
// absurd or infeasible target). InvalidArgument, marked so that the CLI exits 2 (not 1).
absl::Status UsageError(absl::string_view message);
// `status` (InvalidArgument or not) marked as a usage error; OK stays OK.
absl::Status AsUsageError(const absl::Status& status);
bool IsUsageError(const absl::Status& status);

// Maps an errno value to a Status: ENOENT → NotFound, EEXIST → AlreadyExists, EACCES/EPERM →
// PermissionDenied, ENOSPC/EDQUOT/ENOMEM → ResourceExhausted, anything else → Unavailable.
// The message is "<what>: <strerror>".
absl::Status ErrnoToStatus(int errno_value, absl::string_view what);

namespace internal_status {
// Aborts with a message when destroyed; backs UCP_CHECK.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  [[noreturn]] ~CheckFailure();
  template <typename T>
  CheckFailure& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  std::ostringstream stream_;
};
}  // namespace internal_status

}  // namespace ucp

// Aborts on a broken invariant (programmer bug). Never for bad input: that is a Status.
#define UCP_CHECK(cond) \
  if (cond) {           \
  } else                \
    ::ucp::internal_status::CheckFailure(__FILE__, __LINE__, #cond)
