#include "ucp/source.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"

namespace ucp::store {

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
    return absl::InvalidArgumentError(absl::StrCat(info_.path, ": parameter '", param.name, "' listed twice"));
  }
  by_name_.emplace(param.name, params_.size());
  params_.push_back(std::move(param));
  return absl::OkStatus();
}

int Source::AddFile(std::shared_ptr<ByteSource> file) {
  files_.push_back(std::move(file));
  return static_cast<int>(files_.size()) - 1;
}

absl::Status Source::ReadState(const ParamMeta& param, ParamState state, absl::Span<std::byte> dest) const {
  const auto& meta = param.state(state);
  if (!meta) {
    return absl::NotFoundError(
        absl::StrCat(info_.path, ": parameter '", param.name, "' has no ", ParamStateName(state), " state"));
  }
  UCP_ASSIGN_OR_RETURN(int64_t expected, param.shape.NumBytes(meta->dtype));
  if (dest.size() != static_cast<uint64_t>(expected)) {
    return absl::InvalidArgumentError(absl::StrCat("ReadState(", param.name, "): destination holds ", dest.size(),
                                                   " bytes, the tensor ", expected));
  }
  uint64_t at = 0;
  for (const ByteRun& run : meta->runs) {
    if (run.file < 0 || run.file >= static_cast<int>(files_.size()) || run.size > dest.size() - at) {
      return absl::InternalError(absl::StrCat(info_.path, ": parameter '", param.name, "': bad byte run"));
    }
    UCP_RETURN_IF_ERROR(files_[run.file]->ReadAt(run.offset, dest.subspan(at, run.size)));
    at += run.size;
  }
  if (at != dest.size()) {
    return absl::InternalError(absl::StrCat(info_.path, ": parameter '", param.name, "': runs cover ", at, " of ",
                                            dest.size(), " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Buffer> Source::StateBytes(const ParamMeta& param, ParamState state) const {
  const auto& meta = param.state(state);
  if (meta && meta->runs.size() == 1) {
    const ByteRun& run = meta->runs[0];
    UCP_ASSIGN_OR_RETURN(int64_t expected, param.shape.NumBytes(meta->dtype));
    if (run.size == static_cast<uint64_t>(expected) && run.file >= 0 && run.file < static_cast<int>(files_.size())) {
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

}  // namespace ucp::store
