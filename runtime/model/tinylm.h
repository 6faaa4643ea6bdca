// TinyLM: the network of DeepSpeed's fixture checkpoints, exactly as specs/fixture-model.md states
// it (embedding tied with the output head, frozen positional table, pre-LN GELU MLP blocks with
// biases, final LayerNorm, head bias; loss = mean cross-entropy of fp32 logits).
#pragma once

#include <memory>

#include "runtime/model/model.h"

namespace ucp::runtime {

struct TinyLmShape {
  int64_t vocab = 61, dim = 24, hidden = 56, blocks = 2, seq_len = 8;
};

std::unique_ptr<Model> MakeTinyLm(const TinyLmShape& shape);

}  // namespace ucp::runtime
