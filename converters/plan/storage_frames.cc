#include "converters/plan/storage_frames.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "ucp/torch_frame.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::plan {

using formats::torch::StorageRef;
using formats::torch::TensorRef;
using formats::torch::Value;

absl::Status AddStorageRuns(const formats::torch::TorchFile& file, int file_index,
                            StorageRuns* out) {
  for (const StorageRef* s : file.storages()) {
    UCP_ASSIGN_OR_RETURN(const formats::zip::ZipEntry* entry, file.StorageEntry(*s));
    (*out)[s] = ucp::ByteRun{file_index, entry->data_offset, entry->size};
  }
  return absl::OkStatus();
}

absl::Status SliceRuns(const TensorRuns& runs, uint64_t begin, uint64_t length,
                       absl::string_view origin, absl::string_view what, std::vector<Piece>* out) {
  uint64_t pos = 0;
  const uint64_t end = begin + length;
  for (const ucp::ByteRun& run : runs.runs) {
    if (pos >= end) break;
    const uint64_t lo = std::max(pos, begin), hi = std::min(pos + run.size, end);
    if (lo < hi) out->push_back(Piece{run.file, run.offset + (lo - pos), hi - lo});
    pos += run.size;
  }
  if (pos < end)
    return absl::DataLossError(
        absl::StrCat(origin, ": ", what, " holds ", pos, " bytes, needs ", end));
  return absl::OkStatus();
}

void StorageFrames::ReserveZeros(Plan* plan) {
  zero_source_ = static_cast<int>(plan->sources.size());
  plan->sources.push_back(PlanSource{"<zeros>", 0, nullptr});
}

const StorageRef* StorageFrames::NewStorage(DType dtype, int64_t numel, std::vector<Piece> pieces) {
  StorageRef storage;
  storage.key = "0";  // renumbered by the pickle writer
  storage.dtype = dtype;
  storage.location = "cpu";
  storage.numel = numel;
  const StorageRef* ref = arena_->NewStorage(std::move(storage));
  for (const Piece& p : pieces) {
    if (p.source < 0) max_zeros_ = std::max(max_zeros_, p.length);
  }
  new_storages_[ref] = std::move(pieces);
  return ref;
}

const Value* StorageFrames::NewTensor(DType dtype, int64_t numel, int64_t storage_numel,
                                      bool requires_grad, std::vector<Piece> pieces) {
  TensorRef t;
  t.storage = NewStorage(dtype, storage_numel, std::move(pieces));
  t.dtype = dtype;
  t.shape = Shape({numel});
  t.stride = {1};
  t.requires_grad = requires_grad;
  return arena_->Tensor(std::move(t));
}

absl::StatusOr<PlanFile> StorageFrames::Frame(std::string path, FileRole role,
                                              const Value& root) const {
  std::vector<const StorageRef*> storages;
  UCP_ASSIGN_OR_RETURN(ucp::TorchFrame frame,
                       ucp::FrameTorchFile(ucp::ArchiveRootFor(path), root, &storages));
  PlanFile f;
  f.path = std::move(path);
  f.role = role;
  f.size = frame.file_size;
  for (size_t i = 0; i < storages.size(); ++i) {
    const ucp::TorchFrame::Storage& s = frame.storages[i];
    Region r{s.payload_offset, s.size, {}};
    if (auto it = new_storages_.find(storages[i]); it != new_storages_.end()) {
      uint64_t at = s.payload_offset;
      for (const Piece& p : it->second) {
        if (p.length == 0) continue;
        r.ops.push_back(
            CopyOp{p.source < 0 ? zero_source_ : p.source, p.source_offset, p.length, at});
        at += p.length;
      }
    } else {
      auto run = existing_->find(storages[i]);
      if (run == existing_->end()) {
        return absl::InvalidArgumentError(absl::StrCat(f.path, ": storage '", storages[i]->key,
                                                       "' is in none of the input files"));
      }
      if (run->second.size != s.size) {
        return absl::DataLossError(absl::StrCat(*origin_, ": storage '", storages[i]->key, "' has ",
                                                run->second.size,
                                                " bytes on disk, its pickle says ", s.size));
      }
      if (s.size > 0)
        r.ops.push_back(CopyOp{run->second.file, run->second.offset, s.size, s.payload_offset});
    }
    f.regions.push_back(std::move(r));
  }
  f.frame = std::move(frame);
  return f;
}

void StorageFrames::FinishZeros(Plan* plan) const {
  std::vector<std::byte> zeros(max_zeros_, std::byte{0});
  plan->sources[zero_source_] =
      PlanSource{"<zeros>", max_zeros_, MemorySource(Buffer::FromVector(std::move(zeros)))};
}

}  // namespace ucp::converters::plan
