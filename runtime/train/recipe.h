// The fixture recipe (`--data recipe:SEED`): the synthetic next-token task DeepSpeed's fixture
// checkpoints were trained on, drawn exactly as specs/fixture-model.md "Data" says with LibTorch's
// CPU generator (the same numbers as Python torch's), so that a run resumed here sees the batches
// DeepSpeed saw.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace ucp::runtime {

// tokens [rows, seq_len + 1] (int64) of step `step` (1-based): the whole global batch of
// `global_batch` rows (a rank takes its rows).
at::Tensor RecipeBatch(uint64_t seed, int64_t step, int64_t global_batch, int64_t vocab,
                       int64_t seq_len);

}  // namespace ucp::runtime
