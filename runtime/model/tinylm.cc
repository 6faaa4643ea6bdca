#include "runtime/model/tinylm.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Generator.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/normal.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>

#include <string>

namespace ucp::runtime {
namespace {

class TinyLm : public Model {
 public:
  explicit TinyLm(const TinyLmShape& s) : s_(s) {
    const int64_t V = s.vocab, D = s.dim, H = s.hidden;
    // named_parameters order: the root's own parameters (pos, head_bias) first, then submodules.
    AddParam("pos", {s.seq_len, D}, ParamKind::kFrozen);
    AddParam("head_bias", {V});
    AddParam("embed.weight", {V, D});
    for (int64_t b = 0; b < s.blocks; ++b) {
      const std::string p = "blocks." + std::to_string(b) + ".";
      AddParam(p + "ln.weight", {D});
      AddParam(p + "ln.bias", {D});
      AddParam(p + "fc1.weight", {H, D});
      AddParam(p + "fc1.bias", {H});
      AddParam(p + "fc2.weight", {D, H});
      AddParam(p + "fc2.bias", {D});
    }
    AddParam("ln_f.weight", {D});
    AddParam("ln_f.bias", {D});
    // state_dict: pos, head_bias, embed, blocks..., ln_f, head.weight (the tied alias).
    for (const ModelParam& p : params_) state_dict_order_.push_back(p.name);
    state_dict_order_.push_back("head.weight");
    tied_.push_back({"head.weight", "embed.weight"});
    module_names_ = {"", "embed", "blocks"};
    for (int64_t b = 0; b < s.blocks; ++b) {
      const std::string p = "blocks." + std::to_string(b);
      for (const char* sub : {"", ".ln", ".fc1", ".fc2"}) module_names_.push_back(p + sub);
    }
    module_names_.push_back("ln_f");
    module_names_.push_back("head");
  }

  std::string type() const override { return "tinylm"; }
  int num_units() const override { return static_cast<int>(s_.blocks) + 2; }

  std::vector<int> UnitParams(int unit) const override {
    const int last = num_units() - 1;
    if (unit == 0) return {Find("embed.weight"), Find("pos")};
    if (unit == last)
      return {Find("ln_f.weight"), Find("ln_f.bias"), Find("embed.weight"), Find("head_bias")};
    const int first = 3 + 6 * (unit - 1);  // blocks.<unit-1>.* follow pos, head_bias, embed
    return {first, first + 1, first + 2, first + 3, first + 4, first + 5};
  }

  at::Tensor Unit(int unit, const at::Tensor& in, const at::Tensor& targets) override {
    const std::vector<int> p = UnitParams(unit);
    auto v = [&](int i) -> const at::Tensor& { return params_[p[i]].value; };
    if (unit == 0) {
      const at::Tensor& embed = v(0);
      const int64_t T = in.size(1);
      return at::embedding(embed, in) + v(1).narrow(0, 0, T).to(embed.scalar_type());
    }
    const int64_t D = s_.dim;
    if (unit == num_units() - 1) {
      at::Tensor h = at::layer_norm(in, {D}, v(0), v(1), 1e-5);
      at::Tensor logits = at::linear(h, v(2)) + v(3);
      return at::cross_entropy_loss(logits.to(at::kFloat).reshape({-1, s_.vocab}),
                                    targets.reshape({-1}));
    }
    at::Tensor x = at::layer_norm(in, {D}, v(0), v(1), 1e-5);
    return in + at::linear(at::gelu(at::linear(x, v(2), v(3))), v(4), v(5));
  }

  at::Tensor InitialValue(int param, uint64_t seed) const override {
    const ModelParam& p = params_[param];
    at::Generator g = at::detail::createCPUGenerator(seed * 7919 + static_cast<uint64_t>(param));
    const std::string& n = p.name;
    auto ends = [&](const char* suffix) {
      const std::string s(suffix);
      return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0;
    };
    if (n == "embed.weight") return at::normal(0.0, 0.2, p.shape, g);
    if (n == "pos") return at::normal(0.0, 0.1, p.shape, g);
    if (ends("ln.weight") || n == "ln_f.weight") return at::ones(p.shape);
    if (ends(".bias") || n == "head_bias") return at::zeros(p.shape);
    // nn.Linear-like scale: U(-1/sqrt(in), 1/sqrt(in)) as a normal of the same variance.
    const double fan_in = static_cast<double>(p.shape.back());
    return at::normal(0.0, 1.0 / std::sqrt(3.0 * fan_in), p.shape, g);
  }

 private:
  TinyLmShape s_;
};

}  // namespace

std::unique_ptr<Model> MakeTinyLm(const TinyLmShape& shape) {
  return std::make_unique<TinyLm>(shape);
}

}  // namespace ucp::runtime
