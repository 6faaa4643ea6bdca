#include "runtime/model/dense_decoder.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/normal.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "runtime/model/decoder_blocks.h"

namespace ucp::runtime {
namespace {

class DenseDecoder : public Model {
 public:
  explicit DenseDecoder(const DenseDecoderShape& s) : s_(s) {
    const int64_t H = s.hidden, I = s.intermediate, hd = s.head_dim;
    const bool qkv_bias = s.attention_bias || s.model_type == "qwen2";
    const bool o_bias = s.attention_bias && s.model_type != "qwen2";
    AddParam("model.embed_tokens.weight", {s.vocab, H});
    for (int64_t l = 0; l < s.layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      layer_first_.push_back(static_cast<int>(params_.size()));
      for (const char* n : {"q", "k", "v"}) {
        const int64_t out = (std::string(n) == "q" ? s.heads : s.kv_heads) * hd;
        AddParam(p + "self_attn." + n + "_proj.weight", {out, H});
        if (qkv_bias) AddParam(p + "self_attn." + n + "_proj.bias", {out});
      }
      AddParam(p + "self_attn.o_proj.weight", {H, s.heads * hd});
      if (o_bias) AddParam(p + "self_attn.o_proj.bias", {H});
      if (s.model_type == "qwen3") {
        AddParam(p + "self_attn.q_norm.weight", {hd});
        AddParam(p + "self_attn.k_norm.weight", {hd});
      }
      AddParam(p + "mlp.gate_proj.weight", {I, H});
      AddParam(p + "mlp.up_proj.weight", {I, H});
      AddParam(p + "mlp.down_proj.weight", {H, I});
      AddParam(p + "input_layernorm.weight", {H});
      AddParam(p + "post_attention_layernorm.weight", {H});
    }
    layer_first_.push_back(static_cast<int>(params_.size()));
    AddParam("model.norm.weight", {H});
    if (!s.tie_word_embeddings) AddParam("lm_head.weight", {s.vocab, H});
    for (const ModelParam& p : params_) state_dict_order_.push_back(p.name);
    if (s.tp_size > 1) ShardForTp();
    if (s.tie_word_embeddings) {
      state_dict_order_.push_back("lm_head.weight");
      tied_.push_back({"lm_head.weight", "model.embed_tokens.weight"});
    }
    module_names_ = {"", "model", "model.embed_tokens", "model.layers"};
    for (int64_t l = 0; l < s.layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l);
      std::vector<std::string> subs = {"",
                                       ".self_attn",
                                       ".self_attn.q_proj",
                                       ".self_attn.k_proj",
                                       ".self_attn.v_proj",
                                       ".self_attn.o_proj"};
      if (s.model_type == "qwen3") {
        subs.push_back(".self_attn.q_norm");
        subs.push_back(".self_attn.k_norm");
      }
      for (const char* m : {".mlp", ".mlp.gate_proj", ".mlp.up_proj", ".mlp.down_proj",
                            ".input_layernorm", ".post_attention_layernorm"})
        subs.push_back(m);
      for (const std::string& sub : subs) module_names_.push_back(p + sub);
    }
    module_names_.push_back("model.norm");
    module_names_.push_back("lm_head");
  }

  std::string type() const override { return s_.model_type; }
  void SetTpGroup(const TpGroup& tp) override { tp_ = tp; }
  void SetSpGroup(const TpGroup& sp) override { sp_ = sp; }
  int num_units() const override { return static_cast<int>(s_.layers) + 2; }

  std::vector<int> UnitParams(int unit) const override {
    if (unit == 0) return {0};
    if (unit == num_units() - 1) {
      const int norm = layer_first_.back();
      return {norm, s_.tie_word_embeddings ? 0 : norm + 1};
    }
    std::vector<int> out;
    for (int i = layer_first_[unit - 1]; i < layer_first_[unit]; ++i) out.push_back(i);
    return out;
  }

  at::Tensor Unit(int unit, const at::Tensor& in, const at::Tensor& targets) override {
    if (unit == 0) return at::embedding(Read(0), in);
    if (unit == num_units() - 1) {
      const std::vector<int> p = UnitParams(unit);
      at::Tensor hidden = RmsNorm(in, Read(p[0]));
      // Untied lm_head under AutoTP: colwise_gather_output (this rank's vocabulary rows, the
      // logits gathered) or replicated.
      const at::Tensor logits =
          s_.tie_word_embeddings ? at::linear(hidden, Read(p[1])) : Linear("lm_head", hidden);
      return at::cross_entropy_loss(logits.to(at::kFloat).reshape({-1, s_.vocab}),
                                    targets.reshape({-1}));
    }
    const std::string p = "model.layers." + std::to_string(unit - 1) + ".";
    at::Tensor h = in + Attention(p, RmsNorm(in, V(p + "input_layernorm.weight")));
    at::Tensor x = RmsNorm(h, V(p + "post_attention_layernorm.weight"));
    // Column-parallel gate / up, row-parallel down under AutoTP (each a plain linear without).
    at::Tensor gate = Linear(p + "mlp.gate_proj", x), up = Linear(p + "mlp.up_proj", x);
    return h + Linear(p + "mlp.down_proj", at::silu(gate) * up);
  }

  at::Tensor InitialValue(int param, uint64_t seed) const override {
    const ModelParam& p = params_[param];
    if (p.shape.size() == 1) {
      const bool norm = p.name.find("norm") != std::string::npos;
      return norm ? at::ones(p.shape) : at::zeros(p.shape);
    }
    // The whole tensor, then this rank's slice: every tp starts from the same weights.
    at::Generator g = at::detail::createCPUGenerator(seed * 7919 + static_cast<uint64_t>(param));
    return p.Slice(at::normal(0.0, 0.02, p.global_shape(), g)).clone();  // HF initializer_range
  }

 private:
  const TpParamSplit* Split(int i) const {
    return tp_.active() && !s_.tp_splits.empty() ? &s_.tp_splits[static_cast<size_t>(i)] : nullptr;
  }
  // The parameter as the forward reads it: a grad_allreduce parameter's gradient is summed over
  // TP (DeepSpeed's hook; the identity forward of CopyToTp).
  at::Tensor Read(int i) const {
    const TpParamSplit* s = Split(i);
    const at::Tensor& v = params_[static_cast<size_t>(i)].value;
    return s != nullptr && s->style == TpStyle::kGradAllreduce ? CopyToTp(tp_, v) : v;
  }
  at::Tensor V(const std::string& name) const { return Read(index_.at(name)); }
  // A parameter that may be absent (biases, q/k norms): undefined then.
  at::Tensor Opt(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? at::Tensor() : Read(it->second);
  }
  bool ColumnSplit(const std::string& weight) const {
    const TpParamSplit* s = Split(index_.at(weight));
    return s != nullptr && s->sharded() && !s->row;
  }
  bool RowSplit(const std::string& weight) const {
    const TpParamSplit* s = Split(index_.at(weight));
    return s != nullptr && s->row;
  }
  // One linear module with its own AutoTP collectives (§2.3): a column split sums its input's
  // gradient (and with gather_output all-gathers its output), a row split sums its output and
  // adds the replicated bias once.
  at::Tensor Linear(const std::string& module, const at::Tensor& x) const {
    const int wi = index_.at(module + ".weight");
    const TpParamSplit* s = Split(wi);
    const at::Tensor w = Read(wi), b = Opt(module + ".bias");
    const bool column = s != nullptr && s->sharded() && !s->row, row = s != nullptr && s->row;
    at::Tensor in = x;
    if (column) in = CopyToTp(tp_, x);
    // A row-parallel lm_head reads the replicated hidden state: this rank's columns of it.
    if (row && module == "lm_head") in = ScatterToTp(tp_, x, s->widths[0]);
    at::Tensor y = at::linear(in, w, row ? at::Tensor() : b);
    if (row) {
      y = ReduceFromTp(tp_, y);
      if (b.defined()) y = y + b;
    }
    if (s != nullptr && s->style == TpStyle::kColumnGather) y = GatherColumns(tp_, y, s->widths[0]);
    return y;
  }
  at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w) const {
    return ucp::runtime::RmsNorm(x, w, s_.rms_norm_eps);
  }

  at::Tensor Attention(const std::string& p, const at::Tensor& x) const {
    const std::string a = p + "self_attn.";
    GqaWeights w;
    w.q = V(a + "q_proj.weight");
    w.k = V(a + "k_proj.weight");
    w.v = V(a + "v_proj.weight");
    w.o = V(a + "o_proj.weight");
    w.q_bias = Opt(a + "q_proj.bias");
    w.k_bias = Opt(a + "k_proj.bias");
    w.v_bias = Opt(a + "v_proj.bias");
    w.o_bias = Opt(a + "o_proj.bias");
    // replicated_with_grad_allreduce (Qwen3): the norms act on this rank's heads only.
    w.q_norm = Opt(a + "q_norm.weight");
    w.k_norm = Opt(a + "k_norm.weight");
    w.tp = &tp_;
    w.q_col = ColumnSplit(a + "q_proj.weight");
    w.k_col = ColumnSplit(a + "k_proj.weight");
    w.v_col = ColumnSplit(a + "v_proj.weight");
    w.o_row = RowSplit(a + "o_proj.weight");
    w.sp = &sp_;
    return GqaAttention(x, w, s_.head_dim, s_.rms_norm_eps, s_.rope_theta);
  }

  // AutoTP: each parameter's pieces on this rank, by its split (runtime/config/tp_partition.h).
  void ShardForTp() {
    for (size_t i = 0; i < params_.size() && i < s_.tp_splits.size(); ++i) {
      const TpParamSplit& split = s_.tp_splits[i];
      if (!split.sharded()) continue;
      ModelParam& p = params_[i];
      const size_t dim = static_cast<size_t>(split.dim);
      p.pieces = split.Pieces(s_.tp_rank);
      p.slice_dim = split.dim;
      p.slice_begin = p.pieces.empty() ? 0 : p.pieces[0].first;
      p.slice_full = p.shape[dim];
      p.shape[dim] = split.Width(s_.tp_rank);
      if (p.pieces.size() <= 1) p.pieces.clear();
      p.tp_sharded = true;
      p.tp_split = std::make_shared<const TpParamSplit>(split);
    }
  }

  DenseDecoderShape s_;
  std::vector<int> layer_first_;  // first parameter of each layer, then model.norm's
  TpGroup tp_, sp_;
};

}  // namespace

std::unique_ptr<Model> MakeDenseDecoder(const DenseDecoderShape& shape) {
  return std::make_unique<DenseDecoder>(shape);
}

absl::Status CheckDenseDecoderTp(const DenseDecoderShape& s, const std::vector<ModelParam>& params,
                                 const std::vector<TpParamSplit>& splits) {
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < params.size(); ++i) index[params[i].name] = i;
  auto refuse = [](const std::string& name, const std::string& why) {
    return absl::UnimplementedError(
        absl::StrCat("tensor_parallel: the partition of ", name, " ", why));
  };
  // A weight's width along `dim` on rank r (the whole dim when not split along it).
  auto width = [&](const std::string& name, int dim, int r) -> int64_t {
    const size_t i = index.at(name);
    const TpParamSplit& sp = splits[i];
    return sp.dim == dim ? sp.Width(r) : params[i].shape[static_cast<size_t>(dim)];
  };
  for (size_t i = 0; i < params.size(); ++i) {
    const TpParamSplit& sp = splits[i];
    const std::string& n = params[i].name;
    if (sp.style == TpStyle::kColumnGather && n != "lm_head.weight")
      return refuse(n, "asks for gather_output: ucp train gathers the output of lm_head only");
    if (n == "lm_head.weight" && sp.sharded() && !sp.row && sp.style != TpStyle::kColumnGather)
      return refuse(n,
                    "splits lm_head without gather_output: the loss needs the whole "
                    "vocabulary (a column spec with gather_output: true, a row spec, or skip)");
    if (n == "lm_head.weight" && sp.row && sp.sub_params)
      return refuse(n,
                    "splits a row-parallel lm_head by a shape: DeepSpeed trains a row "
                    "lm_head on an unreshaped input-dimension cut only");
    for (const char* out_proj : {"o_proj.weight", "down_proj.weight"}) {
      if (absl::EndsWith(n, out_proj) && sp.dim == 0)
        return refuse(n,
                      "splits its output rows (a column spec): the residual needs the whole "
                      "hidden size; make it row or skip");
    }
  }
  const int64_t hd = s.head_dim;
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    const std::string a = p + "self_attn.", m = p + "mlp.";
    for (int r = 0; r < s.tp_size; ++r) {
      const int64_t q = width(a + "q_proj.weight", 0, r), k = width(a + "k_proj.weight", 0, r),
                    v = width(a + "v_proj.weight", 0, r), o = width(a + "o_proj.weight", 1, r);
      const std::string at_rank = absl::StrCat(" on TP rank ", r);
      if (q % hd != 0 || k % hd != 0 || k != v || (k == 0 ? q != 0 : (q / hd) % (k / hd) != 0))
        return refuse(a + "q_proj/k_proj/v_proj",
                      absl::StrCat("leaves ", q, " / ", k, " / ", v, " rows", at_rank,
                                   ": not whole heads of ", hd,
                                   " with the query heads a multiple of the KV heads"));
      if (o != q)
        return refuse(a + "o_proj.weight",
                      absl::StrCat("leaves ", o, " input columns", at_rank, " for ", q,
                                   " attention outputs (q_proj and o_proj must be split alike: "
                                   "column and row, or both replicated)"));
      const int64_t g = width(m + "gate_proj.weight", 0, r), u = width(m + "up_proj.weight", 0, r),
                    d = width(m + "down_proj.weight", 1, r);
      if (g != u || d != g)
        return refuse(m + "gate_proj/up_proj/down_proj",
                      absl::StrCat("leaves ", g, " / ", u, " / ", d, " intermediate units", at_rank,
                                   " (gate and up column, down row, or all replicated)"));
    }
    for (const char* proj : {"q", "k"}) {
      const std::string norm = absl::StrCat(a, proj, "_norm.weight");
      auto it = index.find(norm);
      if (it == index.end()) continue;
      if (splits[index.at(absl::StrCat(a, proj, "_proj.weight"))].sharded() &&
          splits[it->second].style != TpStyle::kGradAllreduce)
        return refuse(norm,
                      "keeps it replicated without grad_allreduce while its heads are "
                      "split: its gradient would differ per TP rank (add a skip spec with "
                      "\"grad_allreduce\": true)");
    }
  }
  return absl::OkStatus();
}

}  // namespace ucp::runtime
