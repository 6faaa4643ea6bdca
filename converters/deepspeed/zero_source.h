// A DeepSpeed ZeRO tag folder read in place as a Source of the UCP contract (ucp/source.h): the
// "virtual UCP". Every trainable parameter's fp32 / exp_avg / exp_avg_sq is the concatenation of its
// fragments in the optimizer shards (ordered by merged offset, so AutoEP and native-MoE experts come
// out as the stacked [num_experts, ...] tensor); frozen parameters come from their model-states
// fragments, buffers from the model-states file's `module`, tied aliases share their target's
// states. No tensor byte is read to open it.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "ucp/source.h"

namespace ucp::converters::deepspeed {

class ZeroSource : public store::Source {
 public:
  const CheckpointIndex& index() const { return index_; }

  // Opens `dir` (a save folder or a tag folder) with OpenCheckpoint. Unimplemented for tp > 1 (the
  // merged tensor of a TP-split parameter is not a concatenation of runs; `ucp convert` merges it).
  static absl::StatusOr<std::unique_ptr<ZeroSource>> Open(const std::string& dir, const OpenOptions& options = {});

 private:
  ZeroSource(store::SourceInfo info, CheckpointIndex index);
  absl::Status Build();

  CheckpointIndex index_;
};

}  // namespace ucp::converters::deepspeed
