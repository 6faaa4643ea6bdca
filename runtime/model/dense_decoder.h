// DenseDecoder: the Llama / Qwen2 / Qwen3 / Mistral decoder of a Hugging Face config.json, with
// Hugging Face's parameter names and registration order (so that its safetensors and DeepSpeed
// checkpoints of it load by name): RMSNorm (fp32 inside), rotate-half RoPE, grouped-query causal
// attention in fp32 (Qwen3: per-head q_norm / k_norm before RoPE), SwiGLU MLP, optional tied
// lm_head; loss = mean cross-entropy of fp32 logits against already aligned labels. The forward is
// the AutoTP harness model's (specs/fixture-model.md, AutoEP "Common structure").
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "runtime/config/tp_partition.h"
#include "runtime/model/model.h"

namespace ucp::runtime {

struct DenseDecoderShape {
  std::string model_type = "llama";  // llama, mistral, qwen2, qwen3
  int64_t vocab = 0, hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0,
          head_dim = 0;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // llama/mistral: q, k, v, o biases; qwen2 always has q, k, v
  // AutoTP (tp_size > 1): one split per parameter in registration order (PartitionForTp over
  // the parameters of the same shape at tp 1); each linear's collectives follow its own split
  // (column: input gradient summed, row: output summed, gather: output all-gathered), over the
  // group given to Model::SetTpGroup.
  int tp_size = 1, tp_rank = 0;
  std::vector<TpParamSplit> tp_splits;
};

std::unique_ptr<Model> MakeDenseDecoder(const DenseDecoderShape& shape);

// Whether the forward can run every TP rank's slices of `splits` (over `params`, the tp-1
// model's): whole heads, q/k/v/o and gate/up/down widths that agree, o_proj / down_proj not
// column-split, gather_output only on lm_head, lm_head column-split only with gather_output (or
// row-split without a shape), and
// Qwen3's q_norm / k_norm marked grad_allreduce when their heads are split. Unimplemented naming
// the parameter otherwise (DeepSpeed would fail in the forward or let the ranks drift apart).
absl::Status CheckDenseDecoderTp(const DenseDecoderShape& shape,
                                 const std::vector<ModelParam>& params,
                                 const std::vector<TpParamSplit>& splits);

}  // namespace ucp::runtime
