// The `ucp._ucp` extension module: checkpoints opened through OpenSource (any kind ucp reads) and
// their tensors as numpy arrays, without torch. The public module is python/ucp/__init__.py,
// which re-exports these names.
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "converters/sources/open_source.h"
#include "pybind11/numpy.h"
#include "pybind11/pybind11.h"
#include "pybind11/stl.h"
#include "python/diff_binding.h"
#include "python/numpy_array.h"
#include "python/status_exceptions.h"
#include "python/verbs_binding.h"
#include "ucp/source.h"

namespace ucp::python {
namespace {

namespace py = pybind11;
using ucp::ParamMeta;
using ucp::ParamState;
using ucp::Source;

// A Python-side handle; params and arrays keep it (and so the source's mapped files) alive.
struct Checkpoint {
  std::shared_ptr<const Source> source;
};

py::object JsonToPython(const nlohmann::json& value) {
  return py::module_::import("json").attr("loads")(value.dump());
}

py::tuple ShapeTuple(const Shape& shape) {
  py::tuple t(shape.rank());
  for (int i = 0; i < shape.rank(); ++i) t[i] = shape.dim(i);
  return t;
}

const char* RoleName(ucp::ParamRole role) {
  switch (role) {
    case ucp::ParamRole::kTrainable: return "trainable";
    case ucp::ParamRole::kFrozen: return "frozen";
    case ucp::ParamRole::kBuffer: return "buffer";
  }
  return "?";
}

py::list StateNames(const ParamMeta& p) {
  py::list names;
  for (int s = 0; s < ucp::kNumParamStates; ++s) {
    if (p.states[s].has_value())
      names.append(std::string(ucp::ParamStateName(static_cast<ParamState>(s))));
  }
  return names;
}

// The dtype of the fp32 (or only) state, by the one name table the CLI and its JSON use too
// (formats/base/dtype.h: "f32", "bf16", "f16", ...).
std::string ParamDType(const ParamMeta& p) {
  for (const auto& state : p.states) {
    if (state.has_value()) return std::string(DTypeName(state->dtype));
  }
  return "";
}

const ParamMeta& FindParam(const Checkpoint& c, const std::string& name) {
  const ParamMeta* p = c.source->Find(name);
  if (p == nullptr)
    throw py::key_error(absl::StrCat(c.source->info().path, ": no parameter '", name, "'"));
  return *p;
}

py::array Tensor(const Checkpoint& c, const std::string& name, const std::string& state_name,
                 bool upcast) {
  const ParamMeta& param = FindParam(c, name);
  const std::optional<ParamState> state = ucp::ParamStateFromName(state_name);
  if (!state.has_value()) {
    throw py::value_error(
        absl::StrCat("unknown state '", state_name, "' (fp32, exp_avg, exp_avg_sq)"));
  }
  const auto& meta = param.state(*state);
  if (!meta.has_value()) {
    throw py::key_error(absl::StrCat(c.source->info().path, ": parameter '", name, "' has no ",
                                     state_name, " state"));
  }
  absl::StatusOr<Buffer> bytes;
  {
    py::gil_scoped_release release;
    bytes = c.source->StateBytes(param, *state);
  }
  py::array array = WrapBuffer(ValueOrThrow(std::move(bytes)), meta->dtype, param.shape);
  return upcast ? UpcastToFloat32(array, meta->dtype) : array;
}

py::dict Topology(const Checkpoint& c) {
  const ucp::SourceInfo& info = c.source->info();
  py::dict d;
  d["dp"] = info.dp_size;
  d["tp"] = info.tp_size;
  d["pp"] = info.pp_size;
  d["ep"] = info.ep_size;
  d["zero_stage"] =
      info.zero_stage < 0 ? py::object(py::none()) : py::object(py::int_(info.zero_stage));
  d["optimizer_wrapper"] = info.optimizer_wrapper;
  d["master_dtype"] = std::string(DTypeName(info.master_dtype));
  return d;
}

Checkpoint Open(const std::string& path, const std::string& tag, bool prefer_universal) {
  converters::sources::OpenSourceOptions options;
  options.tag = tag;
  options.prefer_universal = prefer_universal;
  absl::StatusOr<std::unique_ptr<Source>> opened;
  {
    py::gil_scoped_release release;
    opened = converters::sources::OpenSource(path, options);
  }
  return Checkpoint{std::shared_ptr<const Source>(ValueOrThrow(std::move(opened)))};
}

void DefineParam(py::module_& m) {
  py::class_<ParamMeta>(
      m, "Param", "One parameter: its merged shape, dtype, states and how the source stores it.")
      .def_property_readonly("name", [](const ParamMeta& p) { return p.name; })
      .def_property_readonly("shape", [](const ParamMeta& p) { return ShapeTuple(p.shape); })
      .def_property_readonly("dtype", &ParamDType,
                             "dtype of the fp32 (master) state: 'f32', 'bf16', 'f16', ... (as `ucp "
                             "inspect` prints it)")
      .def_property_readonly("numel",
                             [](const ParamMeta& p) { return ValueOrThrow(p.shape.NumElements()); })
      .def_property_readonly("partitioning", [](const ParamMeta& p) { return p.partitioning; })
      .def_property_readonly("role", [](const ParamMeta& p) { return RoleName(p.role); })
      .def_property_readonly("param_group", [](const ParamMeta& p) { return p.param_group; })
      .def_property_readonly("expert", [](const ParamMeta& p) { return p.expert; })
      .def_property_readonly("num_experts", [](const ParamMeta& p) { return p.num_experts; })
      .def_property_readonly("tied_to",
                             [](const ParamMeta& p) {
                               return p.tied_to.empty() ? py::object(py::none())
                                                        : py::object(py::str(p.tied_to));
                             })
      .def_property_readonly("step", [](const ParamMeta& p) { return p.step; })
      .def_property_readonly("states", &StateNames,
                             "state names present: 'fp32', 'exp_avg', 'exp_avg_sq'")
      .def("__repr__", [](const ParamMeta& p) {
        return absl::StrCat("<ucp.Param '", p.name, "' ", p.shape.ToString(), " ", ParamDType(p),
                            " ", p.partitioning, ">");
      });
}

void DefineCheckpoint(py::module_& m) {
  py::class_<Checkpoint>(
      m, "Checkpoint",
      "A checkpoint opened with ucp.open(): a DeepSpeed ZeRO folder (read in place), a Universal "
      "Checkpoint folder, safetensors, pytorch_model.bin or HDF5.")
      .def_property_readonly(
          "kind", [](const Checkpoint& c) { return std::string(SourceKindName(c.source->kind())); })
      .def_property_readonly("path", [](const Checkpoint& c) { return c.source->info().path; })
      .def_property_readonly("tag", [](const Checkpoint& c) { return c.source->info().tag; })
      .def_property_readonly("step", [](const Checkpoint& c) { return c.source->info().step; })
      .def_property_readonly("topology", &Topology,
                             "dp, tp, pp, ep, zero_stage, optimizer_wrapper, master_dtype")
      .def_property_readonly(
          "param_groups",
          [](const Checkpoint& c) { return JsonToPython(c.source->info().param_groups); })
      .def_property_readonly(
          "extra", [](const Checkpoint& c) { return JsonToPython(c.source->info().extra); })
      .def_property_readonly(
          "params",
          [](const Checkpoint& c) {
            std::vector<const ParamMeta*> params;
            for (const ParamMeta& p : c.source->params()) params.push_back(&p);
            return params;
          },
          py::return_value_policy::reference_internal, "every parameter, in the source's order")
      .def("names",
           [](const Checkpoint& c) {
             std::vector<std::string> names;
             for (const ParamMeta& p : c.source->params()) names.push_back(p.name);
             return names;
           })
      .def("__len__", [](const Checkpoint& c) { return c.source->params().size(); })
      .def("__contains__", [](const Checkpoint& c,
                              const std::string& name) { return c.source->Find(name) != nullptr; })
      .def("__getitem__", &FindParam, py::return_value_policy::reference_internal)
      .def("tensor", &Tensor, py::arg("name"), py::arg("state") = "fp32", py::arg("upcast") = false,
           "The whole (merged) tensor of one state as a read-only numpy array: zero-copy when its "
           "bytes are one "
           "contiguous run of a mapped file. bf16 comes as uint16 bit patterns unless upcast=True "
           "(float32).")
      .def(
          "diff",
          [](const Checkpoint& c, const Checkpoint& other, const std::vector<std::string>& states,
             double atol, bool compare_steps) {
            return Diff(*c.source, *other.source, states, atol, compare_steps);
          },
          py::arg("other"),
          py::arg("states") = std::vector<std::string>{"fp32", "exp_avg", "exp_avg_sq"},
          py::arg("atol") = 0.0, py::arg("compare_steps") = true,
          "Compares with another checkpoint of any kind, parameter by parameter and state by state "
          "(states both "
          "sides have), as `ucp diff`. Returns a ucp.DiffReport (truthy when they differ).")
      .def("__repr__", [](const Checkpoint& c) {
        return absl::StrCat("<ucp.Checkpoint ", SourceKindName(c.source->kind()), " '",
                            c.source->info().path, "', ", c.source->params().size(), " params>");
      });
}

}  // namespace

PYBIND11_MODULE(_ucp, m) {
  m.doc() = "ucp: read DeepSpeed / Universal Checkpoints as numpy arrays, without torch.";
  m.attr("__version__") = UCP_VERSION;  // VERSION, through CMake
  RegisterExceptions(m);
  DefineParam(m);
  DefineDiff(m);
  DefineVerbs(m);
  DefineCheckpoint(m);
  m.def("open", &Open, py::arg("path"), py::arg("tag") = "", py::arg("prefer_universal") = false,
        "Opens a checkpoint: a DeepSpeed save or tag folder, a UCP folder, a .safetensors / .bin / "
        ".h5 file or "
        "folder. tag: the ZeRO tag instead of `latest`'s; prefer_universal: a save folder with "
        "both `latest` "
        "and `latest_universal` opens the UCP. FileNotFoundError, ValueError, NotImplementedError, "
        "ucp.CorruptCheckpointError.");
}

}  // namespace ucp::python
