// Re-saving pickled trees over input bytes, for every planner that writes torch files (the UCP
// writer's model and state files, the ZeRO sink's shards): where the input files' storages lie
// (StorageRuns), tensors as runs of those files (TensorRuns), new storages whose payload is a list
// of pieces (byte ranges of plan sources, or zeros), and the framing of a tree into a PlanFile
// whose regions copy those pieces, or copy an input storage whole.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "converters/plan/plan.h"
#include "formats/base/dtype.h"
#include "formats/torch/pickle_value.h"
#include "formats/torch/torch_file.h"
#include "ucp/source.h"

namespace ucp::converters::plan {

// Where storages of opened torch files lie: plan source (file index), offset, size of the record.
using StorageRuns = absl::flat_hash_map<const formats::torch::StorageRef*, ucp::ByteRun>;
// Adds every storage of `file`'s tree as a run of plan source `file_index`.
absl::Status AddStorageRuns(const formats::torch::TorchFile& file, int file_index,
                            StorageRuns* out);

// The row-major bytes of one tensor as runs of plan sources.
struct TensorRuns {
  DType dtype = DType::kF32;
  std::vector<ucp::ByteRun> runs;
};

// A piece of a new storage's payload: `length` bytes of plan source `source` at `source_offset`,
// or `length` zero bytes (source -1).
struct Piece {
  int source = -1;
  uint64_t source_offset = 0;
  uint64_t length = 0;
};

// Appends to `out` the pieces of bytes [begin, begin + length) of a tensor stored as `runs`.
// DataLoss ("<origin>: <what> holds N bytes, needs M") when the runs are shorter.
absl::Status SliceRuns(const TensorRuns& runs, uint64_t begin, uint64_t length,
                       absl::string_view origin, absl::string_view what, std::vector<Piece>* out);

class StorageFrames {
 public:
  // `existing`: where the input files' storages are (plan source = file index); `origin` names the
  // input in messages. Both must outlive this object.
  StorageFrames(formats::torch::ValueArena* arena, const StorageRuns* existing,
                const std::string* origin)
      : arena_(arena), existing_(existing), origin_(origin) {}

  // Reserves the zeros source at the end of `plan`'s sources; call once, after the file sources
  // and before anything else adds a source.
  void ReserveZeros(Plan* plan);
  // A new storage of `numel` elements filled by `pieces` (which must add up to its bytes).
  const formats::torch::StorageRef* NewStorage(DType dtype, int64_t numel,
                                               std::vector<Piece> pieces);
  // A new 1-D tensor of `numel` elements over a new storage of `storage_numel` elements.
  const formats::torch::Value* NewTensor(DType dtype, int64_t numel, int64_t storage_numel,
                                         bool requires_grad, std::vector<Piece> pieces);
  // `root` torch.save'd at `path`: every storage either new (its pieces) or an input storage
  // (copied whole, its size checked against the pickle's).
  absl::StatusOr<PlanFile> Frame(std::string path, FileRole role,
                                 const formats::torch::Value& root) const;
  // Gives the zeros source its size; call after the last Frame.
  void FinishZeros(Plan* plan) const;

 private:
  formats::torch::ValueArena* arena_;
  const StorageRuns* existing_;
  const std::string* origin_;
  absl::flat_hash_map<const formats::torch::StorageRef*, std::vector<Piece>> new_storages_;
  uint64_t max_zeros_ = 0;
  int zero_source_ = -1;
};

}  // namespace ucp::converters::plan
