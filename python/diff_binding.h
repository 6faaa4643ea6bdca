// Checkpoint.diff over DiffSources (converters/sources/source_diff.h): ucp.DiffReport,
// ucp.DiffEntry.
#pragma once

#include <string>
#include <vector>

#include "converters/sources/source_diff.h"
#include "pybind11/pybind11.h"
#include "ucp/source.h"

namespace ucp::python {

void DefineDiff(pybind11::module_& m);

// ValueError for an unknown state name; the readers' errors mapped by status_exceptions.h.
converters::sources::DiffReport Diff(const ucp::Source& a, const ucp::Source& b,
                                     const std::vector<std::string>& states, double atol,
                                     bool compare_steps);

}  // namespace ucp::python
