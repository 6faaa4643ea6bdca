// The writing verbs and verify for Python (ucp._ucp._convert, _reshard, _export, _verify): the
// same pipelines as the CLI (converters/pipelines, converters/verify), run with the GIL released.
// ucp/_verbs.py wraps them in ucp.convert / reshard / export / verify with result objects.
#pragma once

#include "pybind11/pybind11.h"

namespace ucp::python {

void DefineVerbs(pybind11::module_& m);

}  // namespace ucp::python
