#include "runtime/train/recipe.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/where.h>

#include <vector>

namespace ucp::runtime {

at::Tensor RecipeBatch(uint64_t seed, int64_t step, int64_t global_batch, int64_t vocab,
                       int64_t seq_len) {
  at::Generator g = at::detail::createCPUGenerator(seed * 1000003 + static_cast<uint64_t>(step));
  std::vector<at::Tensor> cols;
  cols.push_back(at::randint(0, vocab, {global_batch, 1}, g));
  for (int64_t t = 0; t < seq_len; ++t) {
    at::Tensor next = (cols.back() * 3 + 1).remainder(vocab);
    at::Tensor noise = at::randint(0, vocab, {global_batch, 1}, g);
    at::Tensor flip = at::rand({global_batch, 1}, g) < 0.1;
    cols.push_back(at::where(flip, noise, next));
  }
  return at::cat(cols, 1);
}

}  // namespace ucp::runtime
