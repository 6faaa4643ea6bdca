#include "ucp/source.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"

namespace ucp {

absl::string_view SourceKindName(SourceKind kind) {
  switch (kind) {
    case SourceKind::kZero: return "zero";
    case SourceKind::kUniversal: return "universal";
    case SourceKind::kSafetensors: return "safetensors";
    case SourceKind::kTorchWeights: return "bin";
    case SourceKind::kHdf5: return "hdf5";
  }
  return "?";
}

absl::string_view ParamStateName(ParamState state) {
  switch (state) {
    case ParamState::kFp32: return "fp32";
    case ParamState::kExpAvg: return "exp_avg";
    case ParamState::kExpAvgSq: return "exp_avg_sq";
  }
  return "?";
}

std::optional<ParamState> ParamStateFromName(absl::string_view name) {
  if (name == "fp32" || name == "weight") return ParamState::kFp32;
  if (name == "exp_avg") return ParamState::kExpAvg;
  if (name == "exp_avg_sq") return ParamState::kExpAvgSq;
  return std::nullopt;
}

uint64_t StateNumBytes(const ParamMeta& param, ParamState state) {
  const auto& meta = param.state(state);
  if (!meta) return 0;
  auto bytes = param.shape.NumBytes(meta->dtype);
  return bytes.ok() ? static_cast<uint64_t>(*bytes) : 0;
}

const ParamMeta* Source::Find(absl::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &params_[it->second];
}

absl::Status Source::AddParam(ParamMeta param) {
  if (by_name_.contains(param.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(info_.path, ": parameter '", param.name, "' listed twice"));
  }
  by_name_.emplace(param.name, params_.size());
  params_.push_back(std::move(param));
  return absl::OkStatus();
}

int Source::AddFile(std::shared_ptr<const ByteSource> file) {
  files_.push_back(std::move(file));
  return static_cast<int>(files_.size()) - 1;
}

absl::Status Source::ReadState(const ParamMeta& param, ParamState state,
                               absl::Span<std::byte> dest) const {
  const auto& meta = param.state(state);
  if (!meta) {
    return absl::NotFoundError(absl::StrCat(info_.path, ": parameter '", param.name, "' has no ",
                                            ParamStateName(state), " state"));
  }
  UCP_ASSIGN_OR_RETURN(int64_t expected, param.shape.NumBytes(meta->dtype));
  if (dest.size() != static_cast<uint64_t>(expected)) {
    return absl::InvalidArgumentError(absl::StrCat("ReadState(", param.name,
                                                   "): destination holds ", dest.size(),
                                                   " bytes, the tensor ", expected));
  }
  uint64_t at = 0;
  for (const ByteRun& run : meta->runs) {
    if (run.file < 0 || run.file >= static_cast<int>(files_.size()) ||
        run.size > dest.size() - at) {
      return absl::InternalError(
          absl::StrCat(info_.path, ": parameter '", param.name, "': bad byte run"));
    }
    UCP_RETURN_IF_ERROR(files_[run.file]->ReadAt(run.offset, dest.subspan(at, run.size)));
    at += run.size;
  }
  if (at != dest.size()) {
    return absl::InternalError(absl::StrCat(info_.path, ": parameter '", param.name,
                                            "': runs cover ", at, " of ", dest.size(), " bytes"));
  }
  return absl::OkStatus();
}

absl::Status Source::ReadStateRange(const ParamMeta& param, ParamState state, uint64_t offset,
                                    absl::Span<std::byte> dest) const {
  const auto& meta = param.state(state);
  if (!meta) {
    return absl::NotFoundError(absl::StrCat(info_.path, ": parameter '", param.name, "' has no ",
                                            ParamStateName(state), " state"));
  }
  UCP_ASSIGN_OR_RETURN(int64_t total, param.shape.NumBytes(meta->dtype));
  if (offset > static_cast<uint64_t>(total) ||
      dest.size() > static_cast<uint64_t>(total) - offset) {
    return absl::InvalidArgumentError(absl::StrCat("ReadStateRange(", param.name, "): bytes [",
                                                   offset, ", +", dest.size(), ") of ", total));
  }
  if (meta->runs.empty()) {  // a decoding source: the whole tensor, then the slice
    std::vector<std::byte> whole(static_cast<size_t>(total));
    UCP_RETURN_IF_ERROR(ReadState(param, state, absl::MakeSpan(whole)));
    std::copy_n(whole.begin() + static_cast<ptrdiff_t>(offset), dest.size(), dest.begin());
    return absl::OkStatus();
  }
  uint64_t at = 0;  // the run's first byte in the tensor
  size_t done = 0;
  for (const ByteRun& run : meta->runs) {
    if (run.file < 0 || run.file >= static_cast<int>(files_.size())) {
      return absl::InternalError(
          absl::StrCat(info_.path, ": parameter '", param.name, "': bad byte run"));
    }
    const uint64_t begin = std::max(at, offset + done),
                   end = std::min(at + run.size, offset + dest.size());
    if (begin < end && begin == offset + done) {
      UCP_RETURN_IF_ERROR(
          files_[run.file]->ReadAt(run.offset + (begin - at), dest.subspan(done, end - begin)));
      done += end - begin;
    }
    at += run.size;
    if (done == dest.size()) break;
  }
  if (done != dest.size()) {
    return absl::InternalError(absl::StrCat(info_.path, ": parameter '", param.name,
                                            "': runs cover ", done, " of ", dest.size(),
                                            " requested bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Buffer> Source::StateBytes(const ParamMeta& param, ParamState state) const {
  const auto& meta = param.state(state);
  if (meta && meta->runs.size() == 1) {
    const ByteRun& run = meta->runs[0];
    UCP_ASSIGN_OR_RETURN(int64_t expected, param.shape.NumBytes(meta->dtype));
    if (run.size == static_cast<uint64_t>(expected) && run.file >= 0 &&
        run.file < static_cast<int>(files_.size())) {
      return files_[run.file]->ReadBuffer(run.offset, run.size);
    }
  }
  int64_t size = 0;
  if (meta) {
    UCP_ASSIGN_OR_RETURN(size, param.shape.NumBytes(meta->dtype));
  }
  std::vector<std::byte> bytes(static_cast<size_t>(size));
  UCP_RETURN_IF_ERROR(ReadState(param, state, absl::MakeSpan(bytes)));
  return Buffer::FromVector(std::move(bytes));
}

absl::StatusOr<ByteRun> TensorRun(const formats::torch::TorchFile& file,
                                  const formats::torch::TensorRef& tensor, int file_index) {
  if (!tensor.IsContiguous()) {
    return absl::UnimplementedError(absl::StrCat(file.name(),
                                                 ": a non-contiguous tensor view (storage ",
                                                 tensor.storage->key, ") is not a byte run"));
  }
  UCP_ASSIGN_OR_RETURN(const formats::zip::ZipEntry* entry, file.StorageEntry(*tensor.storage));
  const uint64_t elem = DTypeSize(tensor.dtype);
  const uint64_t begin = static_cast<uint64_t>(tensor.storage_offset) * elem;
  const uint64_t size = static_cast<uint64_t>(tensor.NumElements()) * elem;
  if (tensor.storage_offset < 0 || begin > entry->size || size > entry->size - begin) {
    return absl::DataLossError(absl::StrCat(file.name(), ": tensor bytes [", begin, ", +", size,
                                            ") are not inside record ", entry->name));
  }
  return ByteRun{file_index, entry->data_offset + begin, size};
}

absl::StatusOr<StateMeta> TensorState(const formats::torch::TorchFile& file,
                                      const formats::torch::TensorRef& tensor, int file_index) {
  StateMeta meta;
  meta.dtype = tensor.dtype;
  UCP_ASSIGN_OR_RETURN(ByteRun run, TensorRun(file, tensor, file_index));
  if (run.size > 0) meta.runs.push_back(run);
  return meta;
}

nlohmann::json PlainJson(const formats::torch::Value& v) {
  using formats::torch::ValueKind;
  switch (v.kind()) {
    case ValueKind::kNone: return nullptr;
    case ValueKind::kBool: return v.bool_value();
    case ValueKind::kInt: return v.int_value();
    case ValueKind::kFloat: return v.float_value();
    case ValueKind::kStr: return v.str();
    case ValueKind::kTuple:
    case ValueKind::kList:
    case ValueKind::kSet:
    case ValueKind::kFrozenSet: {
      nlohmann::json out = nlohmann::json::array();
      for (const formats::torch::Value* item : v.items()) out.push_back(PlainJson(*item));
      return out;
    }
    case ValueKind::kDict:
    case ValueKind::kOrderedDict: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& [key, value] : v.entries()) {
        std::string k = key->is(ValueKind::kStr) ? key->str() : PlainJson(*key).dump();
        out[k] = PlainJson(*value);
      }
      return out;
    }
    case ValueKind::kTensor:
      return absl::StrCat("tensor ", DTypeName(v.tensor().dtype), " ", v.tensor().shape.ToString());
    case ValueKind::kGlobal: return absl::StrCat(v.module(), ".", v.name());
    case ValueKind::kObject:
      if (v.cls() != nullptr && v.cls()->is(ValueKind::kGlobal))
        return absl::StrCat(v.cls()->module(), ".", v.cls()->name());
      return "object";
    default: return "?";
  }
}

absl::StatusOr<double> ScalarValue(const formats::torch::TorchFile& file,
                                   const formats::torch::Value& value) {
  using formats::torch::ValueKind;
  if (value.is(ValueKind::kInt) || value.is(ValueKind::kBool))
    return static_cast<double>(value.int_value());
  if (value.is(ValueKind::kFloat)) return value.float_value();
  if (value.is(ValueKind::kTensor) && value.tensor().NumElements() == 1) {
    UCP_ASSIGN_OR_RETURN(Buffer bytes, file.TensorBytes(value.tensor()));
    return ElementAsDouble(value.tensor().dtype, bytes.data());
  }
  return absl::DataLossError(
      absl::StrCat(file.name(), ": expected a number or a one-element tensor"));
}

}  // namespace ucp
