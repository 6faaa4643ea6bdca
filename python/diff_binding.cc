// Checkpoint.diff: DiffSources (converters/sources/source_diff.h), the comparison `ucp diff`
// prints, bound as ucp.DiffReport / ucp.DiffEntry.
#include "python/diff_binding.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/sources/source_diff.h"
#include "pybind11/stl.h"
#include "python/status_exceptions.h"

namespace ucp::python {
namespace {

namespace py = pybind11;
using converters::sources::DiffEntry;
using converters::sources::DiffReport;

py::object JsonToPython(const nlohmann::json& value) {
  return py::module_::import("json").attr("loads")(value.dump());
}

}  // namespace

DiffReport Diff(const ucp::Source& a, const ucp::Source& b, const std::vector<std::string>& states,
                double atol, bool compare_steps) {
  converters::sources::DiffOptions options;
  options.atol = atol;
  options.compare_steps = compare_steps;
  options.states.clear();
  for (const std::string& name : states) {
    const std::optional<ucp::ParamState> state = ucp::ParamStateFromName(name);
    if (!state.has_value())
      throw py::value_error(absl::StrCat("unknown state '", name, "' (fp32, exp_avg, exp_avg_sq)"));
    options.states.push_back(*state);
  }
  absl::StatusOr<DiffReport> report;
  {
    py::gil_scoped_release release;
    report = converters::sources::DiffSources(a, b, options);
  }
  return ValueOrThrow(std::move(report));
}

void DefineDiff(py::module_& m) {
  py::class_<DiffEntry>(m, "DiffEntry",
                        "One compared (parameter, state), or a parameter only one side has.")
      .def_readonly("name", &DiffEntry::name)
      .def_readonly("state", &DiffEntry::state,
                    "'fp32', 'exp_avg', 'exp_avg_sq', 'step', or '' (missing param)")
      .def_property_readonly(
          "status",
          [](const DiffEntry& e) { return converters::sources::DiffStatusName(e.status); },
          "equal, within_tolerance, different, shape_mismatch, missing_in_a, missing_in_b, "
          "step_differs")
      .def_readonly("max_abs_diff", &DiffEntry::max_abs_diff)
      .def_readonly("max_rel_diff", &DiffEntry::max_rel_diff,
                    "max |a-b| / max(|a|, |b|) over the elements")
      .def_readonly("num_different", &DiffEntry::num_different,
                    "elements that differ by more than atol")
      .def_readonly("numel", &DiffEntry::numel)
      .def_readonly("weights_only", &DiffEntry::weights_only,
                    "a weights-only side's stored weight compared with the other side's fp32")
      .def_readonly("detail", &DiffEntry::detail)
      .def("__repr__", [](const DiffEntry& e) {
        return absl::StrCat("<ucp.DiffEntry '", e.name, "' ", e.state, " ",
                            converters::sources::DiffStatusName(e.status),
                            " max_abs_diff=", e.max_abs_diff, ">");
      });
  py::class_<DiffReport>(m, "DiffReport",
                         "What Checkpoint.diff found; truthy when the checkpoints differ.")
      .def_property_readonly("equal", &DiffReport::equal, "every entry equal or within tolerance")
      .def_readonly("entries", &DiffReport::entries)
      .def_readonly("params_compared", &DiffReport::params_compared)
      .def_readonly("states_compared", &DiffReport::states_compared)
      .def_readonly("weights_only", &DiffReport::weights_only,
                    "a side is a weights export (fp32 only compared)")
      .def_property_readonly("counts", &DiffReport::Counts, "entries per status")
      .def_property_readonly(
          "differences",
          [](const DiffReport& r) {
            std::vector<DiffEntry> out;
            for (const DiffEntry& e : r.entries) {
              if (e.status != converters::sources::DiffStatus::kEqual &&
                  e.status != converters::sources::DiffStatus::kWithinTolerance) {
                out.push_back(e);
              }
            }
            return out;
          },
          "the entries that are neither equal nor within tolerance")
      .def(
          "to_json", [](const DiffReport& r) { return JsonToPython(r.ToJson()); },
          "`ucp diff --json`'s report fields (docs/json.md), without the envelope (schema_version, "
          "command, a, b, atol)")
      .def("__bool__", [](const DiffReport& r) { return !r.equal(); })
      .def("__repr__", [](const DiffReport& r) {
        return absl::StrCat("<ucp.DiffReport ", r.equal() ? "equal" : "different", ", ",
                            r.params_compared, " params, ", r.states_compared, " states compared>");
      });
}

}  // namespace ucp::python
