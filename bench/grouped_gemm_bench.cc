// grouped_gemm_bench [--quick] [--threads N]: one grouped GEMM call over all experts against a loop
// of per-expert calls of the same CPU reference (kernels/grouped_gemm/grouped_gemm.h), on MoE-like
// sizes: E_l experts with uneven row counts (a skewed split of T tokens, each group rounded up to
// the permute's 8-row alignment), K = N hidden sizes. For each case it first checks that both give
// the same bits, then times each way (median of several calls) at 1 and at --threads workers
// (default 2), and prints ms per call, GFLOP/s and the ratio loop / grouped (> 1: grouped wins).
// --quick runs one small case once (the bench-labelled smoke test). Not a test: nothing asserts a
// speed. Results: docs/benchmarks/kernels_cpu2c_202612.md.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/grouped_gemm/grouped_gemm.h"

namespace {

using ucp::kernels::GroupedGemmForm;
using ucp::kernels::GroupedGemmParams;

struct Case {
  GroupedGemmForm form;
  int32_t experts;
  int64_t tokens, hidden;  // K = N = hidden
};

const char* Name(GroupedGemmForm f) {
  switch (f) {
    case GroupedGemmForm::kForward: return "fwd  Y=X.W^T";
    case GroupedGemmForm::kBackwardData: return "dgrad dX=dY.W";
    case GroupedGemmForm::kBackwardWeight: return "wgrad dW=dY^T.X";
  }
  return "?";
}

// Skewed split (expert e gets weight 1/(e+1), shuffled), each count rounded up to 8.
std::vector<int32_t> Offsets(int32_t experts, int64_t tokens, std::mt19937& rng) {
  std::vector<double> w(experts);
  for (int32_t e = 0; e < experts; ++e) w[e] = 1.0 / (e + 1);
  std::shuffle(w.begin(), w.end(), rng);
  double sum = 0;
  for (double x : w) sum += x;
  std::vector<int32_t> offs(experts);
  int64_t end = 0;
  for (int32_t e = 0; e < experts; ++e) {
    const int64_t c = static_cast<int64_t>(tokens * w[e] / sum);
    offs[e] = static_cast<int32_t>(end += (std::max<int64_t>(c, 8) + 7) / 8 * 8);
  }
  return offs;
}

template <typename F>
double MedianMs(int reps, F&& f) {
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// The per-expert loop: one Run per group, each on its own slice, as a runtime without a grouped
// kernel would call a plain GEMM (`use_grouped_mm=false`).
void PerExpertLoop(const GroupedGemmParams& p) {
  const int64_t elem = ucp::kernels::ElemBytes(p.elem);
  const auto* x = static_cast<const char*>(p.x);
  const auto* w = static_cast<const char*>(p.w);
  const auto* dy = static_cast<const char*>(p.dy);
  auto* out = static_cast<char*>(p.out);
  int32_t r0 = 0;
  for (int32_t g = 0; g < p.num_groups; ++g) {
    const int32_t rows = p.offs[g] - r0;
    GroupedGemmParams q = p;
    q.num_groups = 1, q.m = rows, q.offs = &rows;
    q.x = x + r0 * p.k * elem, q.dy = dy + r0 * p.n * elem, q.w = w + g * p.n * p.k * elem;
    q.out = p.form == GroupedGemmForm::kForward        ? out + r0 * p.n * elem
            : p.form == GroupedGemmForm::kBackwardData ? out + r0 * p.k * elem
                                                       : out + g * p.n * p.k * elem;
    if (!ucp::kernels::Run(q).ok()) std::abort();
    r0 = p.offs[g];
  }
}

void RunCase(const Case& c, const std::vector<int32_t>& threads, bool quick, std::mt19937& rng) {
  const std::vector<int32_t> offs = Offsets(c.experts, c.tokens, rng);
  const int64_t m = offs.back(), h = c.hidden;
  std::normal_distribution<float> d;
  auto random = [&](int64_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
  };
  const std::vector<float> x = random(m * h), w = random(c.experts * h * h), dy = random(m * h);
  const size_t out_n = c.form == GroupedGemmForm::kBackwardWeight ? c.experts * h * h : m * h;
  std::vector<float> a(out_n), b(out_n);
  GroupedGemmParams p{c.form,      ucp::kernels::ElemType::kF32,
                      c.experts,   m,
                      h,           h,
                      offs.data(), x.data(),
                      w.data(),    dy.data(),
                      a.data()};
  if (!ucp::kernels::Run(p).ok()) std::abort();
  GroupedGemmParams q = p;
  q.out = b.data();
  PerExpertLoop(q);
  if (std::memcmp(a.data(), b.data(), out_n * sizeof(float)) != 0) {
    std::printf("MISMATCH between grouped and per-expert results\n");
    std::exit(1);
  }
  const double gflop = 2.0 * m * h * h * 1e-9;
  const int reps = quick ? 1 : std::clamp(static_cast<int>(2.0 / gflop), 3, 25);
  std::printf(
      "%-16s E=%-3d rows=%-5lld (min %d, max %d) K=N=%-5lld", Name(c.form), c.experts,
      static_cast<long long>(m),
      [&] {
        int32_t lo = offs[0];
        for (int32_t e = 1; e < c.experts; ++e) lo = std::min(lo, offs[e] - offs[e - 1]);
        return lo;
      }(),
      [&] {
        int32_t hi = offs[0];
        for (int32_t e = 1; e < c.experts; ++e) hi = std::max(hi, offs[e] - offs[e - 1]);
        return hi;
      }(),
      static_cast<long long>(h));
  for (int32_t t : threads) {
    p.num_threads = q.num_threads = t;
    const double grouped = MedianMs(reps, [&] { (void)ucp::kernels::Run(p); });
    const double loop = MedianMs(reps, [&] { PerExpertLoop(q); });
    std::printf(" | t=%d loop %8.3f ms grouped %8.3f ms (%5.1f GFLOP/s) ratio %.2f", t, loop,
                grouped, gflop / grouped * 1e3, loop / grouped);
  }
  std::printf("\n");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int32_t threads = 2;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--quick") {
      quick = true;
    } else if (std::string(argv[i]) == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: grouped_gemm_bench [--quick] [--threads N]\n");
      return 2;
    }
  }
  std::mt19937 rng(2026);
  std::vector<Case> cases;
  if (quick) {
    cases = {{GroupedGemmForm::kForward, 8, 512, 256}};
  } else {
    for (int64_t h : {256, 1024}) {
      for (int64_t t : {512, 1024, 4096}) cases.push_back({GroupedGemmForm::kForward, 8, t, h});
    }
    cases.push_back({GroupedGemmForm::kForward, 32, 1024, 256});  // tiny per-expert groups
    cases.push_back({GroupedGemmForm::kBackwardData, 8, 1024, 256});
    cases.push_back({GroupedGemmForm::kBackwardWeight, 8, 1024, 256});
    cases.push_back({GroupedGemmForm::kBackwardWeight, 32, 1024, 256});
  }
  for (const Case& c : cases) RunCase(c, {1, threads}, quick, rng);
  return 0;
}
