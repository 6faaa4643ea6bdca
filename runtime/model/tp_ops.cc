#include "runtime/model/tp_ops.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

namespace ucp::runtime {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

Comm& CommOf(AutogradContext* ctx) {
  return *reinterpret_cast<Comm*>(ctx->saved_data["comm"].toInt());
}

at::Tensor AllReduced(Comm& comm, const at::Tensor& x) {
  at::Tensor y = x.contiguous().clone();
  comm.AllReduceSum(y);
  return y;
}

class CopyToTpFn : public torch::autograd::Function<CopyToTpFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, at::Tensor x, int64_t comm) {
    ctx->saved_data["comm"] = comm;
    return x.clone();  // a fresh tensor: autograd keeps this node on the path
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {AllReduced(CommOf(ctx), g[0]), at::Tensor()};
  }
};

class ReduceFromTpFn : public torch::autograd::Function<ReduceFromTpFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, at::Tensor x, int64_t comm) {
    (void)ctx;
    return AllReduced(*reinterpret_cast<Comm*>(comm), x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    (void)ctx;
    return {g[0], at::Tensor()};
  }
};

class GatherColumnsFn : public torch::autograd::Function<GatherColumnsFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, at::Tensor x, int64_t comm, int64_t rank,
                            std::vector<int64_t> widths) {
    Comm& c = *reinterpret_cast<Comm*>(comm);
    int64_t offset = 0;
    for (int64_t r = 0; r < rank; ++r) offset += widths[static_cast<size_t>(r)];
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["width"] = widths[static_cast<size_t>(rank)];
    // DeepSpeed pads every shard to the widest, all-gathers, then trims (§2.3).
    const int64_t wmax = *std::max_element(widths.begin(), widths.end());
    std::vector<int64_t> lead(x.sizes().begin(), x.sizes().end() - 1);
    std::vector<int64_t> padded_shape = lead;
    padded_shape.push_back(wmax);
    at::Tensor padded = at::zeros(padded_shape, x.options());
    padded.narrow(-1, 0, x.size(-1)).copy_(x);
    at::Tensor all = at::empty({static_cast<int64_t>(widths.size()) * padded.numel()}, x.options());
    c.AllGather(padded.contiguous(), all);
    std::vector<at::Tensor> parts;
    for (size_t r = 0; r < widths.size(); ++r) {
      parts.push_back(all.narrow(0, static_cast<int64_t>(r) * padded.numel(), padded.numel())
                          .view(padded_shape)
                          .narrow(-1, 0, widths[r]));
    }
    return at::cat(parts, -1);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    const int64_t offset = ctx->saved_data["offset"].toInt();
    const int64_t width = ctx->saved_data["width"].toInt();
    return {g[0].narrow(-1, offset, width).contiguous(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class ScatterToTpFn : public torch::autograd::Function<ScatterToTpFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, at::Tensor x, int64_t comm, int64_t offset,
                            int64_t width) {
    ctx->saved_data["comm"] = comm;
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["full"] = x.size(-1);
    return x.narrow(-1, offset, width).contiguous();
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    // Each rank's slice gradient, summed into the whole (replicated) input's gradient.
    std::vector<int64_t> shape = g[0].sizes().vec();
    shape.back() = ctx->saved_data["full"].toInt();
    at::Tensor whole = at::zeros(shape, g[0].options());
    whole.narrow(-1, ctx->saved_data["offset"].toInt(), g[0].size(-1)).copy_(g[0]);
    CommOf(ctx).AllReduceSum(whole);
    return {whole, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor ScatterToTp(const TpGroup& tp, const at::Tensor& x, const std::vector<int64_t>& widths) {
  if (!tp.active()) return x;
  int64_t offset = 0;
  for (int r = 0; r < tp.rank; ++r) offset += widths[static_cast<size_t>(r)];
  return ScatterToTpFn::apply(x, reinterpret_cast<int64_t>(tp.comm), offset,
                              widths[static_cast<size_t>(tp.rank)]);
}

at::Tensor CopyToTp(const TpGroup& tp, const at::Tensor& x) {
  return tp.active() ? CopyToTpFn::apply(x, reinterpret_cast<int64_t>(tp.comm)) : x;
}

at::Tensor ReduceFromTp(const TpGroup& tp, const at::Tensor& x) {
  return tp.active() ? ReduceFromTpFn::apply(x, reinterpret_cast<int64_t>(tp.comm)) : x;
}

at::Tensor GatherColumns(const TpGroup& tp, const at::Tensor& x,
                         const std::vector<int64_t>& widths) {
  if (!tp.active()) return x;
  return GatherColumnsFn::apply(x, reinterpret_cast<int64_t>(tp.comm), tp.rank, widths);
}

}  // namespace ucp::runtime
