// A DeepSpeed ZeRO tag folder read in place as a Source of the UCP contract (ucp/source.h): the
// "virtual UCP", the tensors `ucp convert` (and DeepSpeed's ds_to_universal) would write. Every
// trainable parameter's fp32 / exp_avg / exp_avg_sq is the concatenation of its fragments in the
// optimizer shards (ordered by merged offset, so AutoEP and native-MoE experts come out as the
// stacked [num_experts, ...] tensor); frozen parameters come from their model-states fragments,
// buffers from the model-states file's `module`, tied aliases share their target's states.
//
// Tensor parallelism (tp > 1, ZeRO-1/2): each dense parameter's merged tensor is the TP merge of
// its mp_rank slices that the UCP writer does (converters/plan/merge_rules.h, ucp/tp_layout.h,
// from the model file's universal_checkpoint_info): concatenations and sub-parameters become byte
// runs of the slices' fragments, tp-replicated parameters are MP rank 0's slice, vocabulary
// parameters keep their first original_vocab_size rows, and averaged parameters have no runs:
// ReadState computes their mean. Frozen parameters and buffers are MP rank 0's, as in the UCP.
// No tensor byte is read to open it.
#pragma once

#include <memory>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "ucp/source.h"

namespace ucp::converters::sources {

class ZeroSource : public ucp::Source {
 public:
  const deepspeed::CheckpointIndex& index() const { return index_; }

  // Opens `dir` (a save folder or a tag folder) with OpenCheckpoint. tp > 1: FailedPrecondition
  // without universal_checkpoint_info (the merge is unknown), Unimplemented for ZeRO-3 (as
  // `ucp convert`); MergeRules' errors naming the parameter.
  static absl::StatusOr<std::unique_ptr<ZeroSource>> Open(
      const std::string& dir, const deepspeed::OpenOptions& options = {});

  // Averaged TP parameters: the mean of the slices (computed); the rest: Source::ReadState.
  absl::Status ReadState(const ucp::ParamMeta& param, ucp::ParamState state,
                         absl::Span<std::byte> dest) const override;

 private:
  ZeroSource(ucp::SourceInfo info, deepspeed::CheckpointIndex index);
  absl::Status Build();
  absl::Status AddTrainable();
  absl::Status AddFrozenBuffersAndAliases();

  deepspeed::CheckpointIndex index_;
  absl::flat_hash_set<std::string> averaged_;  // TP-averaged parameters (no runs)
};

}  // namespace ucp::converters::sources
