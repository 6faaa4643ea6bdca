#include "ucp/weights_source.h"

#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "formats/base/byte_source.h"
#include "formats/base/status.h"
#include "formats/hdf5/h5_reader.h"
#include "formats/registry.h"
#include "formats/safetensors/safetensors_reader.h"
#include "formats/torch/torch_file.h"

namespace ucp {
namespace {

namespace fs = std::filesystem;
using formats::torch::TorchFile;
using formats::torch::Value;
using formats::torch::ValueKind;

class WeightsSource : public Source {
 public:
  WeightsSource(SourceKind kind, SourceInfo info) : Source(kind, std::move(info)) {}
  using Source::AddFile;
  using Source::AddParam;
  using Source::mutable_info;

  // HDF5 datasets are decoded by libhdf5; the rest are byte runs.
  absl::Status ReadState(const ParamMeta& param, ParamState state,
                         absl::Span<std::byte> dest) const override {
    if (auto it = h5_dataset_.find(param.name);
        it != h5_dataset_.end() && state == ParamState::kFp32) {
      return h5_[it->second.first]->ReadInto(it->second.second, dest);
    }
    return Source::ReadState(param, state, dest);
  }

  std::vector<std::unique_ptr<formats::hdf5::H5Reader>> h5_;
  absl::flat_hash_map<std::string, std::pair<size_t, std::string>>
      h5_dataset_;  // name → (reader, dataset)
};

ParamMeta WeightParam(std::string name, Shape shape, StateMeta state, absl::string_view where) {
  ParamMeta meta;
  meta.name = std::move(name);
  meta.shape = std::move(shape);
  meta.role = ParamRole::kTrainable;
  meta.partitioning = std::string(where);
  meta.states[0] = std::move(state);
  return meta;
}

absl::Status AddSafetensors(WeightsSource& source, std::shared_ptr<const ByteSource> file) {
  UCP_ASSIGN_OR_RETURN(auto reader, formats::safetensors::SafetensorsReader::Open(file));
  const int index = source.AddFile(file);
  const std::string where =
      absl::StrCat("safetensors ", fs::path(file->name()).filename().string());
  for (const formats::safetensors::TensorInfo& t : reader.tensors()) {
    StateMeta state;
    state.dtype = t.dtype;
    // TensorInfo offsets are absolute in the file (the reader adds the header's length).
    if (t.end > t.begin) state.runs.push_back(ByteRun{index, t.begin, t.end - t.begin});
    UCP_RETURN_IF_ERROR(source.AddParam(WeightParam(t.name, t.shape, std::move(state), where)));
  }
  for (const auto& [k, v] : reader.metadata()) source.mutable_info().extra["metadata"][k] = v;
  return absl::OkStatus();
}

absl::Status AddTorchStateDict(WeightsSource& source, std::shared_ptr<const ByteSource> file) {
  UCP_ASSIGN_OR_RETURN(TorchFile torch, TorchFile::Open(file));
  const Value& root = torch.root();
  if (!root.is_dict()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file->name(), ": not a state_dict (a dict of name → tensor)"));
  }
  const int index = source.AddFile(file);
  const std::string where = absl::StrCat("torch ", fs::path(file->name()).filename().string());
  for (const auto& [k, v] : root.entries()) {
    if (!k->is(ValueKind::kStr) || !v->is(ValueKind::kTensor)) continue;
    absl::StatusOr<StateMeta> state = TensorState(torch, v->tensor(), index);
    if (!state.ok()) return WithContext(state.status(), absl::StrCat("tensor '", k->str(), "'"));
    UCP_RETURN_IF_ERROR(
        source.AddParam(WeightParam(k->str(), v->tensor().shape, std::move(*state), where)));
  }
  return absl::OkStatus();
}

absl::Status AddHdf5(WeightsSource& source, const std::string& path) {
  UCP_ASSIGN_OR_RETURN(formats::hdf5::H5Reader reader, formats::hdf5::H5Reader::Open(path));
  source.h5_.push_back(std::make_unique<formats::hdf5::H5Reader>(std::move(reader)));
  const size_t r = source.h5_.size() - 1;
  const std::string where = absl::StrCat("hdf5 ", fs::path(path).filename().string());
  for (const formats::hdf5::DatasetInfo& d : source.h5_[r]->datasets()) {
    std::string name = absl::StrReplaceAll(d.path, {{"/", "."}});
    StateMeta state;
    state.dtype = d.dtype;
    source.h5_dataset_[name] = {r, d.path};
    UCP_RETURN_IF_ERROR(
        source.AddParam(WeightParam(std::move(name), d.shape, std::move(state), where)));
  }
  return absl::OkStatus();
}

absl::StatusOr<formats::FileFormat> SniffPath(const std::string& path,
                                              std::shared_ptr<const ByteSource>* opened) {
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<ByteSource> file, OpenFileSource(path));
  UCP_ASSIGN_OR_RETURN(formats::FileFormat format, formats::Sniff(*file));
  *opened = std::move(file);
  return format;
}

absl::Status AddFile(WeightsSource& source, const std::string& path) {
  std::shared_ptr<const ByteSource> file;
  UCP_ASSIGN_OR_RETURN(formats::FileFormat format, SniffPath(path, &file));
  switch (format) {
    case formats::FileFormat::kSafetensors: return AddSafetensors(source, std::move(file));
    case formats::FileFormat::kTorchZip: return AddTorchStateDict(source, std::move(file));
    case formats::FileFormat::kHdf5: return AddHdf5(source, path);
    default:
      return absl::UnimplementedError(
          absl::StrCat(path, ": a legacy torch.save file is not supported"));
  }
}

// The shard files an HF index names, in first-appearance order.
absl::StatusOr<std::vector<std::string>> IndexShards(const fs::path& index_path) {
  UCP_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(index_path.string(), uint64_t{1} << 30));
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("weight_map") || !doc["weight_map"].is_object()) {
    return absl::DataLossError(
        absl::StrCat(index_path.string(), ": not a JSON object with a weight_map"));
  }
  std::vector<std::string> shards;
  for (const auto& [name, shard] : doc["weight_map"].items()) {
    if (!shard.is_string())
      return absl::DataLossError(
          absl::StrCat(index_path.string(), ": weight_map[", name, "] is not a string"));
    const std::string s = shard.get<std::string>();
    if (s.empty() || s.find('/') != std::string::npos || s == "..") {
      return absl::DataLossError(
          absl::StrCat(index_path.string(), ": shard name '", s, "' is not a file name"));
    }
    if (std::find(shards.begin(), shards.end(), s) == shards.end()) shards.push_back(s);
  }
  std::sort(shards.begin(), shards.end());
  return shards;
}

constexpr const char* kIndexFiles[] = {"model.safetensors.index.json",
                                       "pytorch_model.bin.index.json"};
constexpr const char* kSingleFiles[] = {"model.safetensors", "pytorch_model.bin", "model.h5",
                                        "model.hdf5"};

}  // namespace

absl::StatusOr<std::vector<std::string>> WeightsFiles(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    return absl::NotFoundError(absl::StrCat(path, ": no such file or folder"));
  if (!fs::is_directory(path, ec)) return std::vector<std::string>{path};
  for (const char* f : kIndexFiles) {
    if (!fs::exists(fs::path(path) / f, ec)) continue;
    UCP_ASSIGN_OR_RETURN(std::vector<std::string> shards, IndexShards(fs::path(path) / f));
    std::vector<std::string> files;
    for (const std::string& s : shards) files.push_back((fs::path(path) / s).string());
    if (!files.empty()) return files;
  }
  for (const char* f : kSingleFiles) {
    if (fs::exists(fs::path(path) / f, ec)) {
      return std::vector<std::string>{(fs::path(path) / f).string()};
    }
  }
  return absl::NotFoundError(absl::StrCat(
      path, ": no model.safetensors[.index.json], pytorch_model.bin[.index.json] or model.h5"));
}

absl::StatusOr<SourceKind> WeightsKind(const std::string& file) {
  std::shared_ptr<const ByteSource> opened;
  UCP_ASSIGN_OR_RETURN(formats::FileFormat format, SniffPath(file, &opened));
  switch (format) {
    case formats::FileFormat::kSafetensors: return SourceKind::kSafetensors;
    case formats::FileFormat::kHdf5: return SourceKind::kHdf5;
    case formats::FileFormat::kTorchZip: return SourceKind::kTorchWeights;
    default:
      return absl::UnimplementedError(
          absl::StrCat(file, ": a legacy torch.save file is not supported"));
  }
}

absl::StatusOr<std::unique_ptr<Source>> OpenWeightsSource(const std::string& path) {
  UCP_ASSIGN_OR_RETURN(std::vector<std::string> files, WeightsFiles(path));
  UCP_ASSIGN_OR_RETURN(SourceKind kind, WeightsKind(files[0]));
  SourceInfo info;
  info.path = path;
  info.zero_stage = -1;
  auto source = std::make_unique<WeightsSource>(kind, std::move(info));
  for (const std::string& f : files) UCP_RETURN_IF_ERROR(AddFile(*source, f));
  return std::unique_ptr<Source>(std::move(source));
}

}  // namespace ucp
