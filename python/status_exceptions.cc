#include "python/status_exceptions.h"

#include <string>

namespace ucp::python {
namespace {

PyObject* corrupt_checkpoint_error = nullptr;  // owned by the module once added

}  // namespace

void RegisterExceptions(pybind11::module_& m) {
  corrupt_checkpoint_error =
      PyErr_NewExceptionWithDoc("ucp.CorruptCheckpointError",
                                "A checkpoint file is damaged or hostile: truncated, a CRC-32 or "
                                "size mismatch, fragments that do not "
                                "tile their parameter. A subclass of ValueError.",
                                PyExc_ValueError, nullptr);
  if (corrupt_checkpoint_error == nullptr) throw pybind11::error_already_set();
  m.add_object("CorruptCheckpointError", pybind11::handle(corrupt_checkpoint_error));
}

void ThrowStatus(const absl::Status& status) {
  PyObject* type = PyExc_RuntimeError;
  switch (status.code()) {
    case absl::StatusCode::kNotFound: type = PyExc_FileNotFoundError; break;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kAlreadyExists: type = PyExc_ValueError; break;
    case absl::StatusCode::kUnimplemented: type = PyExc_NotImplementedError; break;
    case absl::StatusCode::kDataLoss:
      type = corrupt_checkpoint_error != nullptr ? corrupt_checkpoint_error : PyExc_ValueError;
      break;
    default: break;
  }
  PyErr_SetString(type, std::string(status.message()).c_str());
  throw pybind11::error_already_set();
}

}  // namespace ucp::python
