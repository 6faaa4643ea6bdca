#include "runtime/model/seq_parallel.h"

#include <vector>

#include "runtime/moe/all_to_all.h"

namespace ucp::runtime {
namespace {

// One equal-split exchange of the P leading chunks of c [P, ...] (chunk j to rank j).
at::Tensor ExchangeChunks(const TpGroup& sp, const at::Tensor& c) {
  const int64_t P = c.size(0), rows = c.numel() / P / c.size(-1);
  const std::vector<int64_t> splits(static_cast<size_t>(P), rows);
  at::Tensor flat = c.contiguous().view({P * rows, c.size(-1)});
  return AllToAllRows(*sp.comm, flat, splits, splits).view(c.sizes());
}

}  // namespace

at::Tensor SeqToHeads(const TpGroup& sp, const at::Tensor& x) {
  if (!sp.active()) return x;
  const int64_t B = x.size(0), Sl = x.size(1), N = x.size(2), D = x.size(3), P = sp.size;
  // [B, Sl, P, N/P, D] -> [P, B, Sl, N/P, D]: chunk j (heads of rank j) to rank j.
  at::Tensor c = x.reshape({B, Sl, P, N / P, D}).permute({2, 0, 1, 3, 4});
  at::Tensor got = ExchangeChunks(sp, c);  // [P (source: sequence shard), B, Sl, N/P, D]
  return got.permute({1, 0, 2, 3, 4}).reshape({B, P * Sl, N / P, D});
}

at::Tensor HeadsToSeq(const TpGroup& sp, const at::Tensor& x) {
  if (!sp.active()) return x;
  const int64_t B = x.size(0), S = x.size(1), Nl = x.size(2), D = x.size(3), P = sp.size;
  // [B, P, S/P, N/P, D] -> [P, B, S/P, N/P, D]: sequence shard j back to rank j.
  at::Tensor c = x.reshape({B, P, S / P, Nl, D}).permute({1, 0, 2, 3, 4});
  at::Tensor got = ExchangeChunks(sp, c);  // [P (source: head group), B, S/P, N/P, D]
  return got.permute({1, 2, 0, 3, 4}).reshape({B, S / P, P * Nl, D});
}

}  // namespace ucp::runtime
