#include "runtime/moe/all_to_all.h"

#include <ATen/ops/empty.h>
#include <torch/csrc/autograd/custom_function.h>

#include <atomic>

namespace ucp::runtime {
namespace {

std::atomic<int64_t> bytes_sent{0};

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor Exchange(Comm& comm, const at::Tensor& x, const std::vector<int64_t>& in_splits,
                    const std::vector<int64_t>& out_splits) {
  int64_t rows = 0, sent = 0;
  for (int64_t n : out_splits) rows += n;
  for (size_t r = 0; r < in_splits.size(); ++r) {
    if (static_cast<int>(r) != comm.rank()) sent += in_splits[r];
  }
  bytes_sent += sent * x.size(1) * static_cast<int64_t>(x.element_size());
  at::Tensor out = at::empty({rows, x.size(1)}, x.options());
  comm.AllToAll(x.contiguous(), out, in_splits, out_splits);
  return out;
}

class AllToAllFn : public torch::autograd::Function<AllToAllFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, at::Tensor x, int64_t comm,
                            std::vector<int64_t> in_splits, std::vector<int64_t> out_splits) {
    ctx->saved_data["comm"] = comm;
    ctx->saved_data["in"] = in_splits;
    ctx->saved_data["out"] = out_splits;
    return Exchange(*reinterpret_cast<Comm*>(comm), x, in_splits, out_splits);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    Comm& comm = *reinterpret_cast<Comm*>(ctx->saved_data["comm"].toInt());
    const std::vector<int64_t> in = ctx->saved_data["in"].toIntVector();
    const std::vector<int64_t> out = ctx->saved_data["out"].toIntVector();
    return {Exchange(comm, grad_out[0], out, in), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor AllToAllRows(Comm& comm, const at::Tensor& x, const std::vector<int64_t>& in_splits,
                        const std::vector<int64_t>& out_splits) {
  if (comm.size() == 1) return x;
  return AllToAllFn::apply(x, reinterpret_cast<int64_t>(&comm), in_splits, out_splits);
}

int64_t AllToAllBytesSent() { return bytes_sent.load(); }

at::Tensor ExchangeCounts(Comm& comm, const at::Tensor& counts) {
  if (comm.size() == 1) return counts;
  at::Tensor out = at::empty_like(counts);
  std::vector<int64_t> splits(static_cast<size_t>(comm.size()), 1);
  comm.AllToAll(counts.contiguous(), out, splits, splits);
  return out;
}

}  // namespace ucp::runtime
