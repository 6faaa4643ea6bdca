// Internal to the ZeRO → UCP planner: files built from existing value trees (the optimizer state
// and model-states files, which ds_to_universal re-saves with torch.load → torch.save).
#pragma once

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/plan/plan.h"
#include "formats/torch/pickle_value.h"

namespace ucp::converters::plan::internal_plan {

using formats::torch::StorageRef;
using formats::torch::Value;
using formats::torch::ValueArena;

// Where each storage record of the checkpoint's files lies (file index, payload offset, size).
class StorageLocator {
 public:
  struct Span {
    int file = -1;
    uint64_t offset = 0;
    uint64_t size = 0;
  };
  // DataLoss when a storage's record is missing.
  static absl::StatusOr<StorageLocator> Build(const deepspeed::CheckpointIndex& index);
  // InvalidArgument for a storage that belongs to none of the files.
  absl::StatusOr<Span> Find(const StorageRef* storage) const;

 private:
  absl::flat_hash_map<const StorageRef*, Span> spans_;
};

// A torch file holding `root`, whose storages are copied whole from the checkpoint's records
// (what torch.save writes after torch.load of the same tree).
absl::StatusOr<PlanFile> FileFromTree(std::string path, FileRole role, const Value& root,
                                      const StorageLocator& locator);
// A byte copy of checkpoint file `file`.
PlanFile CopyOfFile(const deepspeed::CheckpointIndex& index, int file, FileRole role);

// zero/optimizer_state.pt (§5.3), ZeRO-1/2 or ZeRO-3 form.
absl::StatusOr<PlanFile> OptimizerStateFile(const deepspeed::CheckpointIndex& index, ValueArena& arena,
                                            const StorageLocator& locator);
// The model-states files: copies, or AutoEP rewrites (§5.4). Appends to plan->files.
absl::Status AddModelFiles(const deepspeed::CheckpointIndex& index, ValueArena& arena,
                           const StorageLocator& locator, Plan* plan);

}  // namespace ucp::converters::plan::internal_plan
