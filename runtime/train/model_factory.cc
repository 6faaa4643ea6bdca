#include "runtime/train/model_factory.h"

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "runtime/config/autoep_config.h"
#include "runtime/config/tp_plan.h"
#include "runtime/model/dense_decoder.h"
#include "runtime/model/moe_decoder.h"
#include "runtime/model/tinylm.h"
#include "runtime/train/expert_setup.h"

namespace ucp::runtime {

namespace {

// The sizes every Hugging Face decoder shape (DenseDecoderShape, MoeDecoderShape) takes alike.
template <typename DecoderShape>
void FillDecoderShape(const ModelConfig& c, DecoderShape& d) {
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
}

absl::StatusOr<std::unique_ptr<Model>> MakeMoeModel(const ModelConfig& c, const TrainConfig& t,
                                                    int world, int rank) {
  if (!t.expert_parallel.enabled) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model_type \"", c.model_type,
        "\" is a mixture of experts, which ucp train runs with AutoEP: set "
        "`expert_parallel.enabled` true in the DeepSpeed config (`autoep_size` 1 keeps every "
        "expert on every rank)"));
  }
  UCP_ASSIGN_OR_RETURN(AutoEpPlan plan, ResolveAutoEpLayers(t.expert_parallel, c.raw, world));
  MoeDecoderShape d;
  FillDecoderShape(c, d);
  d.qk_norm = c.qk_norm;
  d.mla = c.is_mla();
  d.q_lora_rank = c.q_lora_rank;
  d.kv_lora_rank = c.kv_lora_rank;
  d.qk_nope_head_dim = c.qk_nope_head_dim;
  d.qk_rope_head_dim = c.qk_rope_head_dim;
  d.v_head_dim = c.v_head_dim;
  d.ep_size = t.expert_parallel.autoep_size;
  d.ep_rank = EpRankOf(rank, world, d.ep_size, t.use_data_before_expert_parallelism);
  // Mixtral / Qwen adapters capture router logits and keep the HF router name as an alias.
  d.router_alias = !c.is_mla();
  d.moe.resize(static_cast<size_t>(c.num_hidden_layers));
  for (const MoeLayerSettings& l : plan.layers) {
    if (l.layer_index < 0 || l.layer_index >= c.num_hidden_layers)
      return absl::InternalError(absl::StrCat("AutoEP layer ", l.layer_index, " out of range"));
    if (l.gate_bias || l.combine_impl == "legacy_bmm")
      return absl::UnimplementedError(absl::StrCat(
          l.module_path, ": ", l.gate_bias ? "a router bias" : "combine_impl legacy_bmm",
          " is not implemented by ucp train"));
    MoeSpec& m = d.moe[static_cast<size_t>(l.layer_index)];
    m.num_experts = l.num_experts;
    m.top_k = l.top_k;
    m.hidden = l.hidden;
    m.intermediate = l.intermediate;
    m.sigmoid = l.score_func == "sigmoid";
    m.route_norm = l.route_norm;
    m.route_scale = l.route_scale;
    m.score_pre = l.score_apply == "pre";
    m.num_groups = l.num_expert_groups;
    m.limited_groups = l.num_limited_groups;
    m.group_top2_sum = l.group_score != "max";
    m.grouped_gemm = t.expert_parallel.use_grouped_mm;
    if (l.shared_experts) {
      d.shared_intermediate = l.shared_intermediate;
      d.shared_gate = l.shared_experts_gate;
    }
  }
  std::unique_ptr<Model> model = MakeMoeDecoder(d);
  return model;
}

}  // namespace

absl::Status CheckSpHeads(const ModelConfig& c, const TrainConfig& t, int tp, int sp) {
  const int64_t n = c.num_attention_heads, kv = c.num_key_value_heads;
  // Each TP rank's heads, cut on KV-head group boundaries as AutoTP cuts q_proj / k_proj (§2.4).
  std::vector<int64_t> q = ShardSizes(n, tp, "self_attn.q_proj.weight", kv);
  std::vector<int64_t> k = ShardSizes(kv, tp, "self_attn.k_proj.weight", kv);
  if (tp > 1 && !c.is_moe() && !c.is_tinylm() && c.head_dim > 0) {
    // A dense decoder's heads as its partition (any source) leaves them on each TP rank.
    DenseDecoderShape d;
    FillDecoderShape(c, d);
    const std::unique_ptr<Model> whole = MakeDenseDecoder(d);
    std::vector<TpParamInfo> infos;
    for (const ModelParam& p : whole->params()) infos.push_back({p.name, p.shape});
    absl::StatusOr<TpPartition> part = PartitionForTp(t.tp_partition, c.raw, infos, tp);
    const int qi = whole->Find("model.layers.0.self_attn.q_proj.weight"),
              ki = whole->Find("model.layers.0.self_attn.k_proj.weight");
    if (part.ok() && qi >= 0 && ki >= 0) {  // else MakeModel reports the partition's error
      for (int r = 0; r < tp; ++r) {
        const TpParamSplit &qs = part->splits[static_cast<size_t>(qi)],
                           &ks = part->splits[static_cast<size_t>(ki)];
        q[static_cast<size_t>(r)] = (qs.sharded() ? qs.Width(r) : n * d.head_dim) / d.head_dim;
        k[static_cast<size_t>(r)] = (ks.sharded() ? ks.Width(r) : kv * d.head_dim) / d.head_dim;
      }
    }
  }
  for (int r = 0; r < tp; ++r) {
    const int64_t qr = q[static_cast<size_t>(r)], kr = k[static_cast<size_t>(r)];
    if (qr % sp == 0 && kr > 0 && (kr % sp == 0 || sp % kr == 0)) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        "`sequence_parallel_size` ", sp, ": Ulysses splits the ", qr, " attention heads and ", kr,
        " KV heads", tp > 1 ? absl::StrCat(" of TP rank ", r, " (of ", tp, ")") : "",
        " over the SP ranks: the heads must be divisible by it, and the KV heads divisible by it "
        "or dividing it"));
  }
  return absl::OkStatus();
}

int AutoEpSize(const ModelConfig& c, const TrainConfig& t) {
  return c.is_moe() && t.expert_parallel.enabled ? t.expert_parallel.autoep_size : 1;
}

absl::StatusOr<std::unique_ptr<Model>> MakeModel(const ModelConfig& c, const TrainConfig& t,
                                                 int world, int rank) {
  if (t.autotp_size > 1 && (c.is_moe() || c.is_tinylm()))
    return absl::UnimplementedError(absl::StrCat(
        "`tensor_parallel.autotp_size` ", t.autotp_size,
        ": AutoTP is implemented for the dense "
        "Hugging Face decoders (llama, mistral, qwen2, qwen3), not model_type \"",
        c.model_type, "\"",
        c.is_moe()
            ? absl::StrCat(" (AutoEP + AutoTP folding",
                           t.tp_partition.preset_model.empty()
                               ? ""
                               : absl::StrCat("; preset_model \"", t.tp_partition.preset_model,
                                              "\" is accepted but cannot "
                                              "shard an AutoEP model"),
                           ")")
            : ""));
  if (c.is_moe()) return MakeMoeModel(c, t, world, rank);
  if (t.expert_parallel.enabled)
    return absl::InvalidArgumentError(
        absl::StrCat("`expert_parallel.enabled`: AutoEP found no MoE layers in model_type \"",
                     c.model_type, "\" (a dense model)"));
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
  FillDecoderShape(c, d);
  d.attention_bias = c.attention_bias;
  if (t.autotp_size > 1) {
    // The partition is resolved over the unsplit parameters (the tp-1 model registers them
    // without allocating), then checked for every TP rank before any rank slices.
    const std::unique_ptr<Model> whole = MakeDenseDecoder(d);
    std::vector<TpParamInfo> infos;
    for (const ModelParam& p : whole->params()) infos.push_back({p.name, p.shape});
    UCP_ASSIGN_OR_RETURN(TpPartition partition,
                         PartitionForTp(t.tp_partition, c.raw, infos, t.autotp_size));
    d.tp_size = t.autotp_size;
    d.tp_rank = rank % t.autotp_size;  // TP groups: consecutive ranks (§2.1)
    UCP_RETURN_IF_ERROR(CheckDenseDecoderTp(d, whole->params(), partition.splits));
    d.tp_splits = std::move(partition.splits);
  }
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
  e.activation_checkpointing = c.activation_checkpointing;
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
