// The batches of a training step for one rank, from the fixture recipe or token data
// (runtime/data). The global batch of step s is the same at every dp; rank r of dp takes, for
// micro-batch k, the rows [(k·dp + r)·micro, +micro) (with one micro-batch: DeepSpeed's rows
// [r·micro, (r+1)·micro) of the fixtures).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace ucp::runtime {

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual std::string description() const = 0;
  // (x, y) of each micro-batch of `rank`: [micro, seq_len] int64 each.
  virtual absl::StatusOr<std::vector<std::pair<at::Tensor, at::Tensor>>> RankMicroBatches(
      int64_t step, int64_t global_batch, int64_t micro, int rank, int world) = 0;
};

// spec: "recipe:SEED", a token file, or an indexed-dataset prefix.
absl::StatusOr<std::unique_ptr<BatchSource>> OpenBatches(const std::string& spec,
                                                         const std::string& dtype, uint64_t seed,
                                                         int64_t vocab, int64_t seq_len);

}  // namespace ucp::runtime
