// Internal to the ZeRO → UCP planner: files built from existing value trees (the optimizer state
// and model-states files, which ds_to_universal re-saves with torch.load → torch.save).
#pragma once

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/plan/plan.h"
#include "converters/plan/storage_frames.h"
#include "formats/torch/pickle_value.h"

namespace ucp::converters::sinks::internal_ucp_sink {

using formats::torch::StorageRef;
using formats::torch::Value;
using formats::torch::ValueArena;

// Where each storage record of the checkpoint's files lies (plan source = file index).
class StorageLocator {
 public:
  static absl::StatusOr<StorageLocator> Build(const deepspeed::CheckpointIndex& index);
  const plan::StorageRuns& runs() const { return runs_; }
  const std::string& origin() const { return origin_; }

 private:
  plan::StorageRuns runs_;
  std::string origin_;
};

// A torch file holding `root`, whose storages are copied whole from the checkpoint's records
// (what torch.save writes after torch.load of the same tree). InvalidArgument for a storage that
// belongs to none of the files, DataLoss for a record whose size is not the pickle's.
absl::StatusOr<plan::PlanFile> FileFromTree(std::string path, plan::FileRole role,
                                            const Value& root, const StorageLocator& locator);
// A byte copy of checkpoint file `file`.
plan::PlanFile CopyOfFile(const deepspeed::CheckpointIndex& index, int file, plan::FileRole role);

// zero/optimizer_state.pt (§5.3), ZeRO-1/2 or ZeRO-3 form.
absl::StatusOr<plan::PlanFile> OptimizerStateFile(const deepspeed::CheckpointIndex& index,
                                                  ValueArena& arena, const StorageLocator& locator);
// The model-states files: copies, or AutoEP rewrites (§5.4). Appends to plan->files.
absl::Status AddModelFiles(const deepspeed::CheckpointIndex& index, ValueArena& arena,
                           const StorageLocator& locator, plan::Plan* plan);

}  // namespace ucp::converters::sinks::internal_ucp_sink
