#include "python/verbs_binding.h"

#include <Python.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "converters/pipelines/convert.h"
#include "converters/pipelines/export.h"
#include "converters/pipelines/reshard.h"
#include "converters/sinks/export_tensors.h"
#include "converters/sources/open_source.h"
#include "converters/verify/verify.h"
#include "formats/base/dtype.h"
#include "pybind11/functional.h"
#include "pybind11/stl.h"
#include "python/numpy_array.h"
#include "python/status_exceptions.h"

namespace ucp::python {
namespace {

namespace py = pybind11;
namespace pipelines = converters::pipelines;
namespace execute = converters::execute;

// Runs `run` on a worker thread while this (the calling) thread, without the GIL between
// polls, wakes every 100 ms: it hands the executor's latest progress to
// `progress(bytes_done, bytes_total, files_done, files_total)` when given, and checks for Ctrl-C
// (Python runs signal handlers only on the main thread). A KeyboardInterrupt, or an exception from
// `progress`, cancels the run (RunPlan removes its staging folder) and is raised once it stopped.
template <typename Result>
Result RunReleased(execute::ExecuteOptions& options, const py::object& progress,
                   const std::function<absl::StatusOr<Result>()>& run) {
  std::atomic<bool> cancel{false};
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool fresh = false;
  execute::ExecuteProgress latest;
  std::optional<absl::StatusOr<Result>> result;
  options.cancel = &cancel;
  options.progress = [&](const execute::ExecuteProgress& p) {
    std::lock_guard<std::mutex> lock(mu);
    latest = p;
    fresh = true;
  };
  std::thread worker([&] {
    absl::StatusOr<Result> r = run();
    std::lock_guard<std::mutex> lock(mu);
    result.emplace(std::move(r));
    done = true;
    cv.notify_all();
  });
  std::optional<py::error_already_set> raised;
  for (bool finished = false; !finished;) {
    std::optional<execute::ExecuteProgress> snapshot;
    {
      py::gil_scoped_release release;
      std::unique_lock<std::mutex> lock(mu);
      cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return done; });
      finished = done;
      if (fresh) snapshot = latest;
      fresh = false;
    }
    if (snapshot && !progress.is_none() && !raised) {
      try {
        progress(snapshot->bytes_done, snapshot->bytes_total, snapshot->files_done,
                 snapshot->files_total);
      } catch (py::error_already_set& e) {
        raised.emplace(std::move(e));
        cancel.store(true);
      }
    }
    if (!finished && !raised && PyErr_CheckSignals() != 0) {
      raised.emplace();  // fetches the pending KeyboardInterrupt
      cancel.store(true);
    }
  }
  {
    py::gil_scoped_release release;
    worker.join();
  }
  if (raised) throw std::move(*raised);
  if (!result->ok()) ThrowStatus(result->status());
  return *std::move(*result);
}

// ValueError unless `name` is a dtype ucp export casts to.
DType ParseDType(const std::string& name) {
  const std::optional<DType> d = converters::sinks::WeightsDTypeFromName(name);
  if (!d) throw py::value_error("dtype: expected f32, bf16 or f16, got '" + name + "'");
  return *d;
}

// The fields of a convert / reshard result that say what was written.
py::dict Written(const std::string& output, size_t files, uint64_t bytes, double seconds) {
  py::dict d;
  d["output"] = output;
  d["num_files"] = files;
  d["bytes"] = bytes;
  d["seconds"] = seconds;
  return d;
}

void SetExecute(execute::ExecuteOptions& e, int threads, bool fsync) {
  e.threads = threads;
  e.fsync = fsync;
}

py::dict Convert(const std::string& input, const std::string& output, const std::string& tag,
                 int threads, bool force, bool fsync, bool write_latest,
                 const py::object& progress) {
  pipelines::ConvertOptions o;
  o.input = input;
  o.output = output;
  o.tag = tag;
  o.force = force;
  o.write_latest = write_latest;
  SetExecute(o.execute, threads, fsync);
  const pipelines::ConvertResult r = RunReleased<pipelines::ConvertResult>(
      o.execute, progress, [&] { return pipelines::Convert(o); });
  py::dict d = Written(r.output, r.files, r.bytes, r.stats.seconds);
  d["latest_universal"] = r.latest_universal;
  d["zero_stage"] = r.info.zero_stage;
  d["params"] = r.info.params;
  return d;
}

py::dict Reshard(const std::string& input, const std::string& output, int dp, int tp,
                 int autoep_size, int zero_stage, const std::string& tag,
                 const std::string& input_tag, int threads, bool force, bool fsync,
                 const py::object& progress) {
  pipelines::ReshardOptions o;
  o.input = input;
  o.output = output;
  o.dp = dp;
  o.tp = tp;
  o.autoep_size = autoep_size;
  o.zero_stage = zero_stage;
  o.tag = tag;
  o.input_tag = input_tag;
  o.force = force;
  SetExecute(o.execute, threads, fsync);
  const pipelines::ReshardResult r = RunReleased<pipelines::ReshardResult>(
      o.execute, progress, [&] { return pipelines::Reshard(o); });
  py::dict d = Written(r.output, r.files, r.bytes, r.stats.seconds);
  d["tag"] = r.tag;
  d["zero_stage"] = r.info.zero_stage;
  d["dp"] = r.info.dp_size;
  d["tp"] = r.info.tp_size;
  d["ep"] = r.info.ep_size;
  return d;
}

py::dict Export(const std::string& input, const std::string& output, const std::string& format,
                const std::string& dtype, uint64_t max_shard_size, const std::string& moe_layout,
                const std::string& tag, bool exclude_frozen, int threads, bool force, bool fsync,
                const py::object& progress) {
  pipelines::ExportOptions o;
  o.input = input;
  o.output = output;
  o.tag = tag;
  o.exclude_frozen = exclude_frozen;
  o.force = force;
  o.max_shard_size = max_shard_size;
  const std::optional<converters::sinks::WeightsFormat> f =
      converters::sinks::WeightsFormatFromName(format);
  if (!f) throw py::value_error("format: expected safetensors, bin or hdf5, got '" + format + "'");
  o.format = *f;
  if (!dtype.empty()) o.dtype = ParseDType(dtype);
  const std::optional<converters::sinks::MoeLayout> layout =
      converters::sinks::MoeLayoutFromName(moe_layout);
  if (!layout) {
    throw py::value_error("moe_layout: expected fused or per-expert, got '" + moe_layout + "'");
  }
  o.moe_layout = *layout;
  SetExecute(o.execute, threads, fsync);
  const pipelines::ExportResult r = RunReleased<pipelines::ExportResult>(
      o.execute, progress, [&] { return pipelines::Export(o); });
  py::dict d;
  d["output"] = r.output;
  d["files"] = r.files;
  d["num_tensors"] = r.tensors;
  d["bytes"] = r.bytes;
  d["seconds"] = r.stats.seconds;
  d["source_kind"] = r.source_kind;
  d["step"] = r.step ? py::cast(*r.step) : py::none();
  d["notes"] = r.notes;
  d["warnings"] = r.warnings;
  return d;
}

// The report as `ucp verify --json` writes it (docs/json.md), as a JSON string.
std::string Verify(const std::string& path, const std::string& tag, bool check_crc) {
  converters::verify::VerifyOptions o;
  o.tag = tag;
  o.check_crc = check_crc;
  absl::StatusOr<converters::verify::VerifyReport> r;
  {
    py::gil_scoped_release release;
    r = converters::verify::VerifyCheckpoint(path, o);
  }
  if (!r.ok()) ThrowStatus(r.status());
  return converters::verify::ReportToJson(*r).dump();
}

// One export tensor's bytes: a zero-copy slice when it is one run of a mapped file, else a copy.
Buffer TensorBytes(const converters::sinks::ExportTensors& all,
                   const converters::sinks::ExportTensor& t, const ucp::Source& source) {
  auto serve = [&](int i) -> const ByteSource& {
    const size_t files = source.files().size();
    return static_cast<size_t>(i) < files ? *source.files()[i] : *all.sources[i].memory;
  };
  if (t.pieces.size() == 1) {
    const converters::sinks::Piece& p = t.pieces[0];
    absl::StatusOr<Buffer> b = serve(p.source).ReadBuffer(p.offset, p.size);
    if (!b.ok()) ThrowStatus(b.status());
    return *std::move(b);
  }
  std::vector<std::byte> bytes(t.bytes);
  uint64_t at = 0;
  for (const converters::sinks::Piece& p : t.pieces) {
    ThrowIfError(serve(p.source).ReadAt(p.offset, absl::MakeSpan(bytes.data() + at, p.size)));
    at += p.size;
  }
  return Buffer::FromVector(std::move(bytes));
}

// The weights zero_to_fp32.py's get_fp32_state_dict_from_zero_checkpoint returns, in its order:
// [(name, array)], a tied alias as the same array object; `dtype` casts floating tensors.
py::list StateDict(const std::string& path, const std::string& tag, const std::string& dtype) {
  converters::sources::OpenSourceOptions open;
  open.tag = tag;
  absl::StatusOr<std::unique_ptr<ucp::Source>> source;
  {
    py::gil_scoped_release release;
    source = converters::sources::OpenSource(path, open);
  }
  if (!source.ok()) ThrowStatus(source.status());
  converters::sinks::WeightsTarget target;
  target.zero_to_fp32 = true;
  if (!dtype.empty()) target.dtype = ParseDType(dtype);
  absl::StatusOr<converters::sinks::ExportTensors> all;
  {
    py::gil_scoped_release release;
    all = converters::sinks::CollectExportTensors(**source, target);
  }
  if (!all.ok()) ThrowStatus(all.status());
  // The arrays keep their Buffers (and the mapped files) alive; the Source itself may go.
  std::vector<py::object> arrays(all->tensors.size());
  py::list out;
  for (size_t i = 0; i < all->tensors.size(); ++i) {
    const converters::sinks::ExportTensor& t = all->tensors[i];
    if (t.alias_of >= 0 && static_cast<size_t>(t.alias_of) < i) {
      arrays[i] = arrays[t.alias_of];
    } else {
      Buffer bytes;
      {
        py::gil_scoped_release release;
        bytes = TensorBytes(*all, t, **source);
      }
      arrays[i] = WrapBuffer(std::move(bytes), t.dtype, t.shape);
    }
    out.append(py::make_tuple(t.name, arrays[i], std::string(DTypeName(t.dtype))));
  }
  return out;
}

}  // namespace

void DefineVerbs(py::module_& m) {
  m.def("_convert", &Convert, py::arg("input"), py::arg("output"), py::arg("tag"),
        py::arg("threads"), py::arg("force"), py::arg("fsync"), py::arg("write_latest"),
        py::arg("progress"));
  m.def("_reshard", &Reshard, py::arg("input"), py::arg("output"), py::arg("dp"), py::arg("tp"),
        py::arg("autoep_size"), py::arg("zero_stage"), py::arg("tag"), py::arg("input_tag"),
        py::arg("threads"), py::arg("force"), py::arg("fsync"), py::arg("progress"));
  m.def("_export", &Export, py::arg("input"), py::arg("output"), py::arg("format"),
        py::arg("dtype"), py::arg("max_shard_size"), py::arg("moe_layout"), py::arg("tag"),
        py::arg("exclude_frozen"), py::arg("threads"), py::arg("force"), py::arg("fsync"),
        py::arg("progress"));
  m.def("_verify", &Verify, py::arg("path"), py::arg("tag"), py::arg("check_crc"));
  m.def("_state_dict", &StateDict, py::arg("path"), py::arg("tag"), py::arg("dtype"));
}

}  // namespace ucp::python
