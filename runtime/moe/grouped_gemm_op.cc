#include "runtime/moe/grouped_gemm_op.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/csrc/autograd/custom_function.h>

#include <stdexcept>
#include <string>

#include "kernels/grouped_gemm/grouped_gemm.h"

namespace ucp::runtime {
namespace {

using kernels::GroupedGemmForm;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::vector<int32_t> Offsets(const std::vector<int64_t>& sizes) {
  std::vector<int32_t> offs;
  int64_t at = 0;
  for (int64_t s : sizes) offs.push_back(static_cast<int32_t>(at += s));
  return offs;
}

// out = form(x or dy, w or x) through kernels::Run; every tensor contiguous, one dtype.
void Gemm(GroupedGemmForm form, const std::vector<int32_t>& offs, const at::Tensor& x,
          const at::Tensor& w, const at::Tensor& dy, int64_t m, int64_t n, int64_t k,
          at::Tensor& out) {
  kernels::GroupedGemmParams p;
  p.form = form;
  p.elem = out.scalar_type() == at::kBFloat16 ? kernels::ElemType::kBF16 : kernels::ElemType::kF32;
  p.num_groups = static_cast<int32_t>(offs.size());
  p.m = m;
  p.n = n;
  p.k = k;
  p.offs = offs.data();
  p.x = x.defined() ? x.data_ptr() : nullptr;
  p.w = w.defined() ? w.data_ptr() : nullptr;
  p.dy = dy.defined() ? dy.data_ptr() : nullptr;
  p.out = out.data_ptr();
  p.num_threads = at::get_num_threads();
  const absl::Status st = kernels::Run(p);
  if (!st.ok()) throw std::runtime_error("grouped GEMM: " + std::string(st.message()));
}

class GroupedLinearFn : public torch::autograd::Function<GroupedLinearFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, at::Tensor x, at::Tensor w,
                            std::vector<int64_t> sizes) {
    x = x.contiguous();
    w = w.contiguous();
    ctx->save_for_backward({x, w});
    ctx->saved_data["sizes"] = sizes;
    const int64_t m = x.size(0), n = w.size(1), k = w.size(2);
    at::Tensor y = at::empty({m, n}, x.options());
    if (m > 0) Gemm(GroupedGemmForm::kForward, Offsets(sizes), x, w, {}, m, n, k, y);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1];
    const std::vector<int32_t> offs = Offsets(ctx->saved_data["sizes"].toIntVector());
    const at::Tensor dy = grad_out[0].to(x.scalar_type()).contiguous();
    const int64_t m = x.size(0), n = w.size(1), k = w.size(2);
    at::Tensor dx = at::empty({m, k}, x.options());
    at::Tensor dw = at::empty_like(w);
    if (m > 0) Gemm(GroupedGemmForm::kBackwardData, offs, {}, w, dy, m, n, k, dx);
    // A group with no rows gets a zero gradient (the kernel writes every group's dW).
    Gemm(GroupedGemmForm::kBackwardWeight, offs, x, {}, dy, m, n, k, dw);
    return {dx, dw, at::Tensor()};
  }
};

}  // namespace

at::Tensor GroupedLinear(const at::Tensor& x, const at::Tensor& w,
                         const std::vector<int64_t>& sizes) {
  if (x.scalar_type() != w.scalar_type() ||
      (x.scalar_type() != at::kFloat && x.scalar_type() != at::kBFloat16))
    throw std::invalid_argument("GroupedLinear: x and w must both be fp32 or both bf16");
  return GroupedLinearFn::apply(x, w, sizes);
}

}  // namespace ucp::runtime
