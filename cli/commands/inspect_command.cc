#include "cli/commands/inspect_command.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/commands/command_output.h"
#include "cli/commands/human_bytes.h"
#include "cli/commands/tree_printer.h"
#include "formats/base/status.h"
#include "formats/hdf5/h5_reader.h"
#include "formats/registry.h"
#include "formats/safetensors/safetensors_reader.h"
#include "formats/torch/torch_file.h"
#include "formats/torch/value_json.h"
#include "formats/zip/zip_reader.h"
#include "nlohmann/json.hpp"

namespace ucp::cli {
namespace {

using Json = nlohmann::json;
using formats::FileFormat;

// One zip record as --verify checked it: its payload's CRC-32 against the central directory's.
struct RecordCheck {
  const formats::zip::ZipEntry* entry;
  absl::Status status;
};

std::vector<RecordCheck> CheckRecords(const formats::zip::ZipReader& zip) {
  std::vector<RecordCheck> rows;
  for (const formats::zip::ZipEntry& e : zip.entries()) rows.push_back({&e, zip.VerifyCrc(e)});
  return rows;
}

absl::Status FirstFailure(const std::vector<RecordCheck>& rows) {
  for (const RecordCheck& r : rows) UCP_RETURN_IF_ERROR(r.status);
  return absl::OkStatus();
}

Json RecordsJson(const std::vector<RecordCheck>& rows) {
  Json a = Json::array();
  for (const RecordCheck& r : rows) {
    a.push_back({{"name", r.entry->name},
                 {"offset", r.entry->data_offset},
                 {"size", r.entry->size},
                 {"crc32", absl::StrFormat("%08x", r.entry->crc32)},
                 {"ok", r.status.ok()}});
  }
  return a;
}

// The table --verify promises: offset, size and CRC-32 of every record and whether it matched;
// `max_rows` good rows at most (0 = all), every bad one.
void PrintRecords(const std::vector<RecordCheck>& rows, int max_rows, std::ostream& out) {
  out << "records (payload offset, size, CRC-32 from the central directory, check):\n";
  int shown = 0, hidden = 0;
  for (const RecordCheck& r : rows) {
    if (r.status.ok() && max_rows > 0 && shown >= max_rows) {
      ++hidden;
      continue;
    }
    ++shown;
    out << absl::StrFormat("  %12d %12d  %08x  %-8s %s\n", r.entry->data_offset, r.entry->size,
                           r.entry->crc32, r.status.ok() ? "ok" : "MISMATCH", r.entry->name);
  }
  if (hidden > 0) out << "  ... " << hidden << " more, all ok (--max-items 0 lists every record)\n";
}

Json ValuesJson(DType dtype, const Buffer& bytes, int count) {
  Json a = Json::array();
  const int64_t n = std::min<int64_t>(count, bytes.size() / DTypeSize(dtype));
  for (int64_t i = 0; i < n; ++i)
    a.push_back(ElementAsDouble(dtype, bytes.data() + i * DTypeSize(dtype)));
  return a;
}

absl::Status InspectTorch(const InspectOptions& o, std::shared_ptr<ByteSource> source,
                          std::ostream& out) {
  using namespace formats::torch;
  UCP_ASSIGN_OR_RETURN(TorchFile file, TorchFile::Open(source));
  const std::vector<RecordCheck> records =
      o.verify ? CheckRecords(file.zip()) : std::vector<RecordCheck>();
  if (o.json) UCP_RETURN_IF_ERROR(FirstFailure(records));  // the error document instead
  uint64_t storage_bytes = 0;
  for (const StorageRef* s : file.storages())
    storage_bytes += static_cast<uint64_t>(s->numel) * DTypeSize(s->dtype);
  auto tensor_values = [&](const TensorRef& t) -> absl::StatusOr<Buffer> {
    if (o.values <= 0 && !o.verify) return Buffer();
    return file.TensorBytes(t);
  };
  if (o.json) {
    absl::Status error;
    Json tree = ValueToJson(file.root(), [&](const TensorRef& t, Json& j) {
      absl::StatusOr<Buffer> bytes = tensor_values(t);
      if (!bytes.ok()) {
        error = bytes.status();
      } else if (o.values > 0) {
        j["values"] = ValuesJson(t.dtype, *bytes, o.values);
      }
    });
    UCP_RETURN_IF_ERROR(error);
    Json doc = JsonDocument("inspect");
    doc.update({{"file", o.path},
                {"format", "torch"},
                {"size", source->Size()},
                {"archive_root", file.archive_root()},
                {"num_records", file.zip().entries().size()},
                {"num_storages", file.storages().size()},
                {"storage_bytes", storage_bytes},
                {"verified", o.verify},
                {"tree", std::move(tree)}});
    if (o.verify) doc["records"] = RecordsJson(records);
    WriteJson(out, doc);
    return absl::OkStatus();
  }
  out << o.path << ": torch.save zip, " << HumanBytes(source->Size()) << ", "
      << file.zip().entries().size() << " records, archive root '" << file.archive_root() << "'\n";
  TreePrinter printer(out, o.max_items, o.values, tensor_values);
  UCP_RETURN_IF_ERROR(printer.Print(file.root()));
  out << printer.tensor_count() << " tensors in " << file.storages().size() << " storages, "
      << HumanBytes(storage_bytes) << " of tensor data\n";
  if (!o.verify) return absl::OkStatus();
  PrintRecords(records, o.max_items, out);
  UCP_RETURN_IF_ERROR(FirstFailure(records));
  out << "verify: OK (" << records.size()
      << " records: CRC-32s match, sizes and offsets consistent)\n";
  return absl::OkStatus();
}

absl::Status InspectSafetensors(const InspectOptions& o, std::shared_ptr<ByteSource> source,
                                std::ostream& out) {
  using formats::safetensors::SafetensorsReader;
  using formats::safetensors::TensorInfo;
  UCP_ASSIGN_OR_RETURN(SafetensorsReader reader, SafetensorsReader::Open(source));
  Json tensors = Json::array();
  for (const TensorInfo& t : reader.tensors()) {
    Json j{{"name", t.name},
           {"dtype", DTypeName(t.dtype)},
           {"shape", std::vector<int64_t>(t.shape.dims().begin(), t.shape.dims().end())},
           {"data_offsets", {t.begin, t.end}}};
    if (o.values > 0 || o.verify) {
      UCP_ASSIGN_OR_RETURN(SharedTensor data, reader.Read(t));
      if (o.values > 0) {
        Buffer bytes(data.owner, data.view.data, t.end - t.begin);
        j["values"] = ValuesJson(t.dtype, bytes, o.values);
      }
    }
    tensors.push_back(std::move(j));
  }
  Json metadata = Json::object();
  for (const auto& [k, v] : reader.metadata()) metadata[k] = v;
  if (o.json) {
    Json doc = JsonDocument("inspect");
    doc.update({{"file", o.path},
                {"format", "safetensors"},
                {"size", source->Size()},
                {"verified", o.verify},
                {"metadata", metadata},
                {"tensors", tensors}});
    WriteJson(out, doc);
    return absl::OkStatus();
  }
  out << o.path << ": safetensors, " << HumanBytes(source->Size()) << ", " << tensors.size()
      << " tensors\n";
  for (const auto& [k, v] : reader.metadata()) out << "  __metadata__." << k << " = " << v << "\n";
  for (const Json& t : tensors) {
    out << "  " << t["name"].get<std::string>() << ": " << t["dtype"].get<std::string>() << " "
        << t["shape"].dump() << (t.contains("values") ? absl::StrCat(" ", t["values"].dump()) : "")
        << "\n";
  }
  if (o.verify) out << "verify: OK (every tensor read; sizes match the header)\n";
  return absl::OkStatus();
}

Json AttrJson(const formats::hdf5::AttrValue& v) {
  return std::visit([](const auto& x) { return Json(x); }, v);
}

absl::Status InspectHdf5(const InspectOptions& o, std::ostream& out) {
  using formats::hdf5::DatasetInfo;
  using formats::hdf5::H5Reader;
  UCP_ASSIGN_OR_RETURN(H5Reader reader, H5Reader::Open(o.path));
  Json datasets = Json::array();
  for (const DatasetInfo& d : reader.datasets()) {
    Json j{{"path", d.path},
           {"dtype", DTypeName(d.dtype)},
           {"shape", std::vector<int64_t>(d.shape.dims().begin(), d.shape.dims().end())}};
    Json attrs = Json::object();
    UCP_ASSIGN_OR_RETURN(formats::hdf5::AttrList attributes, reader.Attributes(d.path));
    for (const auto& [k, v] : attributes) attrs[k] = AttrJson(v);
    j["attributes"] = attrs;
    if (o.values > 0 || o.verify) {
      UCP_ASSIGN_OR_RETURN(SharedTensor data, reader.Read(d.path));
      UCP_ASSIGN_OR_RETURN(int64_t nbytes, d.shape.NumBytes(d.dtype));
      if (o.values > 0)
        j["values"] = ValuesJson(d.dtype, Buffer(data.owner, data.view.data, nbytes), o.values);
    }
    datasets.push_back(std::move(j));
  }
  if (o.json) {
    Json doc = JsonDocument("inspect");
    doc.update(
        {{"file", o.path}, {"format", "hdf5"}, {"verified", o.verify}, {"datasets", datasets}});
    WriteJson(out, doc);
    return absl::OkStatus();
  }
  out << o.path << ": HDF5, " << datasets.size() << " datasets\n";
  for (const Json& d : datasets) {
    out << "  " << d["path"].get<std::string>() << ": " << d["dtype"].get<std::string>() << " "
        << d["shape"].dump() << (d.contains("values") ? absl::StrCat(" ", d["values"].dump()) : "")
        << "\n";
  }
  if (o.verify) out << "verify: OK (every dataset read and decompressed)\n";
  return absl::OkStatus();
}

absl::Status Inspect(const InspectOptions& o, std::ostream& out) {
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<ByteSource> source, OpenFileSource(o.path));
  UCP_ASSIGN_OR_RETURN(FileFormat format, formats::Sniff(*source));
  switch (format) {
    case FileFormat::kTorchZip:
    case FileFormat::kTorchLegacy:  // TorchFile::Open explains that legacy files are not read
      return InspectTorch(o, std::move(source), out);
    case FileFormat::kSafetensors: return InspectSafetensors(o, std::move(source), out);
    case FileFormat::kHdf5: return InspectHdf5(o, out);
  }
  return absl::InternalError("unhandled format");
}

}  // namespace

int RunInspect(const InspectOptions& options, std::ostream& out, std::ostream& err) {
  absl::Status status = Inspect(options, out);
  if (status.ok()) return kExitOk;
  std::string message(status.message());
  // Messages of the readers name the file already; add it where they do not.
  if (message.find(options.path) == std::string::npos)
    message = absl::StrCat(options.path, ": ", message);
  return Fail({out, err, "inspect", options.json}, message);
}

}  // namespace ucp::cli
