// Reading optimizer-state bytes through a CheckpointIndex: the reference way to materialise one
// parameter's state from its fragments (tests, inspection, small checkpoints). Bulk conversion
// plans copies from the TensorLocations instead of calling this per parameter.
#pragma once

#include "absl/status/statusor.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "formats/base/buffer.h"

namespace ucp::converters::deepspeed {

// The bytes of `loc`: a zero-copy slice when the file is mapped. DataLoss if the record is gone.
absl::StatusOr<Buffer> ReadLocation(const CheckpointIndex& index, const TensorLocation& loc);

// One MP slice of `param`'s `state` as flat row-major bytes in merged order: for AutoEP experts
// every EP rank's local tensor in EP order, i.e. the [num_experts, ...] tensor of the UCP file.
// DataLoss when fragments disagree on dtype.
absl::StatusOr<Buffer> GatherState(const CheckpointIndex& index, const Parameter& param,
                                   StateKind state, int mp_rank = 0);

}  // namespace ucp::converters::deepspeed
