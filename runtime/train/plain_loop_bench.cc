// plain_loop_bench: the floor ucp train's step time is compared with (bench/train_bench.sh): the
// same TinyLM forward (runtime/model), the same recipe batches, one process, a plain LibTorch
// loop: backward, torch::nn::utils::clip_grad_norm_, torch::optim::AdamW. No engine, no
// process group, no flat buffers.
//   plain_loop_bench VOCAB DIM HIDDEN BLOCKS SEQ BATCH STEPS   → one JSON line {"step_ms": {...}}
#include <ATen/Parallel.h>
#include <torch/optim/adamw.h>
#include <torch/types.h>

// After torch/types.h: clip_grad.h uses Tensor without including it.
#include <torch/nn/utils/clip_grad.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "runtime/model/tinylm.h"
#include "runtime/train/recipe.h"

int main(int argc, char** argv) {
  using namespace ucp::runtime;
  if (argc != 8) {
    std::fprintf(stderr, "usage: %s VOCAB DIM HIDDEN BLOCKS SEQ BATCH STEPS\n", argv[0]);
    return 2;
  }
  at::set_num_threads(1);
  TinyLmShape s;
  s.vocab = std::atol(argv[1]);
  s.dim = std::atol(argv[2]);
  s.hidden = std::atol(argv[3]);
  s.blocks = std::atol(argv[4]);
  s.seq_len = std::atol(argv[5]);
  const int64_t batch = std::atol(argv[6]), steps = std::atol(argv[7]);
  std::unique_ptr<Model> model = MakeTinyLm(s);
  std::vector<at::Tensor> params;
  for (size_t i = 0; i < model->params().size(); ++i) {
    ModelParam& p = model->params()[i];
    p.value = model->InitialValue(static_cast<int>(i), 42);
    if (p.kind == ParamKind::kTrainable) {
      p.value.set_requires_grad(true);
      params.push_back(p.value);
    }
  }
  torch::optim::AdamW opt(params,
                          torch::optim::AdamWOptions(0.01).betas({0.9, 0.95}).weight_decay(0.05));
  std::string out = "{\"step_ms\": {";
  for (int64_t step = 1; step <= steps; ++step) {
    at::Tensor tokens = RecipeBatch(1234, step, batch, s.vocab, s.seq_len);
    at::Tensor x = tokens.narrow(1, 0, s.seq_len).contiguous();
    at::Tensor y = tokens.narrow(1, 1, s.seq_len).contiguous();
    const auto t0 = std::chrono::steady_clock::now();
    opt.zero_grad();
    at::Tensor h = x;
    for (int u = 0; u < model->num_units(); ++u) h = model->Unit(u, h, y);
    h.backward();
    torch::nn::utils::clip_grad_norm_(params, 1.0);
    opt.step();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    out += (step > 1 ? ", \"" : "\"") + std::to_string(step) + "\": " + std::to_string(ms);
    std::fprintf(stderr, "step %lld loss %.6f %.1f ms\n", static_cast<long long>(step),
                 h.item<double>(), ms);
  }
  std::printf("%s}}\n", out.c_str());
  return 0;
}
