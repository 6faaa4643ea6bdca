#include "runtime/train/model_factory.h"

#include "absl/strings/str_cat.h"
#include "runtime/model/dense_decoder.h"
#include "runtime/model/tinylm.h"

namespace ucp::runtime {

absl::StatusOr<std::unique_ptr<Model>> MakeModel(const ModelConfig& c, Precision precision) {
  (void)precision;
  if (c.model_type == "tinylm") {
    TinyLmShape s;
    s.vocab = c.vocab_size;
    s.dim = c.hidden_size;
    s.hidden = c.intermediate_size;
    s.blocks = c.num_hidden_layers;
    s.seq_len = c.max_position_embeddings;
    return MakeTinyLm(s);
  }
  DenseDecoderShape d;
  d.model_type = c.model_type;
  d.vocab = c.vocab_size;
  d.hidden = c.hidden_size;
  d.intermediate = c.intermediate_size;
  d.layers = c.num_hidden_layers;
  d.heads = c.num_attention_heads;
  d.kv_heads = c.num_key_value_heads;
  d.head_dim = c.head_dim;
  d.rms_norm_eps = c.rms_norm_eps;
  d.rope_theta = c.rope_theta;
  d.tie_word_embeddings = c.tie_word_embeddings;
  d.attention_bias = c.attention_bias;
  return MakeDenseDecoder(d);
}

std::vector<OptimGroup> DefaultGroups(const Model& model, double weight_decay) {
  OptimGroup decay{"decay", weight_decay, {}, 0}, no_decay{"no_decay", 0.0, {}, 0};
  for (size_t i = 0; i < model.params().size(); ++i) {
    const ModelParam& p = model.params()[i];
    if (p.kind != ParamKind::kTrainable) continue;
    (Model::IsDecay(p) ? decay : no_decay).params.push_back(static_cast<int>(i));
  }
  std::vector<OptimGroup> out;
  if (!decay.params.empty()) out.push_back(decay);
  if (!no_decay.params.empty()) out.push_back(no_decay);
  return out;
}

absl::StatusOr<EngineConfig> MakeEngineConfig(const TrainConfig& c) {
  EngineConfig e;
  e.stage = c.zero.stage;
  switch (c.precision) {
    case Precision::kBf16: e.dtype = at::kBFloat16; break;
    case Precision::kFp16:
      return absl::UnimplementedError(
          "fp16.enabled: not supported by ucp train: LibTorch's CPU kernels have no fp16 "
          "matmul or LayerNorm (\"addmm_impl_cpu_ not implemented for 'Half'\"), and the dynamic "
          "loss scaling a GPU build would need is not implemented yet; use bf16");
    default: e.dtype = at::kFloat;
  }
  e.fp32_grad_accum = c.precision == Precision::kBf16 && c.grad_accum_dtype == Precision::kFp32;
  // §4.1: ZeRO-1/2 skip inf/nan steps for bf16 (check_grad_overflow); stage 0 and 3 bf16 never do.
  e.check_overflow = c.precision == Precision::kBf16 && c.bf16_check_grad_overflow &&
                     (e.stage == 1 || e.stage == 2) && !c.bf16_optimizer();
  e.gradient_clipping = c.gradient_clipping;
  e.adam.beta1 = c.optimizer.beta1;
  e.adam.beta2 = c.optimizer.beta2;
  e.adam.eps = c.optimizer.eps;
  e.adam.adam_w_mode = c.optimizer.adam_w_mode;
  e.adam.bias_correction = c.optimizer.bias_correction;
  e.adam.torch_form = c.optimizer.torch_adam;
  e.gradient_accumulation_steps = c.gradient_accumulation_steps;
  return e;
}

int64_t TrainableCount(const Model& model) {
  int64_t n = 0;
  for (const ModelParam& p : model.params()) {
    if (p.kind == ParamKind::kTrainable) n += p.numel();
  }
  return n;
}

}  // namespace ucp::runtime
