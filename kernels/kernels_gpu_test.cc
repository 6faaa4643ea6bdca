// Each RunCuda against its CPU reference (label gpu; skipped without a device). GEMM and router
// scores within float tolerance (other summation order, CUDA's expf); permutation, selection and
// AdamW (same correctly rounded operations) exactly.
#include <cuda_runtime_api.h>

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/adamw/fused_adamw.h"
#include "kernels/grouped_gemm/grouped_gemm.h"
#include "kernels/permute/permute.h"
#include "kernels/router/router_topk.h"

namespace ucp::kernels {
namespace {

template <typename T>
class DeviceVec {
 public:
  explicit DeviceVec(const std::vector<T>& host) : n_(host.size()) {
    EXPECT_EQ(cudaMalloc(&ptr_, std::max<size_t>(1, n_) * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceVec() { cudaFree(ptr_); }
  DeviceVec(const DeviceVec&) = delete;
  DeviceVec& operator=(const DeviceVec&) = delete;
  T* get() { return static_cast<T*>(ptr_); }
  std::vector<T> Host() const {
    std::vector<T> out(n_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(out.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }

 private:
  size_t n_;
  void* ptr_ = nullptr;
};

class KernelsGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) GTEST_SKIP() << "no CUDA device";
  }
};

std::vector<float> Random(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

TEST_F(KernelsGpuTest, GroupedGemmAllForms) {
  const std::vector<int32_t> offs = {40, 40, 100, 173};
  const int64_t m = 180, n = 70, k = 50;
  const std::vector<float> x = Random(m * k, 1), w = Random(4 * n * k, 2), dy = Random(m * n, 3);
  DeviceVec<int32_t> d_offs(offs);
  DeviceVec<float> d_x(x), d_w(w), d_dy(dy);
  for (GroupedGemmForm form : {GroupedGemmForm::kForward, GroupedGemmForm::kBackwardData,
                               GroupedGemmForm::kBackwardWeight}) {
    const size_t out_n = form == GroupedGemmForm::kForward        ? m * n
                         : form == GroupedGemmForm::kBackwardData ? m * k
                                                                  : 4 * n * k;
    std::vector<float> want(out_n, 0.0f);
    GroupedGemmParams p{form,        ElemType::kF32, 4,        m,         n,          k,
                        offs.data(), x.data(),       w.data(), dy.data(), want.data()};
    ASSERT_TRUE(kernels::Run(p).ok());
    DeviceVec<float> d_out(std::vector<float>(out_n, 0.0f));
    p.offs = d_offs.get(), p.x = d_x.get(), p.w = d_w.get(), p.dy = d_dy.get();
    p.out = d_out.get();
    ASSERT_TRUE(RunCuda(p, nullptr).ok());
    const std::vector<float> got = d_out.Host();
    for (size_t i = 0; i < out_n; ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-4f * (1 + std::abs(want[i]))) << static_cast<int>(form);
    }
  }
}

TEST_F(KernelsGpuTest, PermuteIndicesAndRows) {
  const std::vector<int32_t> counts = {2, 0, 3, 1, 0, 6, 9, 0, 0};  // ep=3, E_l=3
  const int64_t n = 21, h = 5, len = PermuteLength(n, 3);
  std::vector<int32_t> perm(len), sizes(3), offs(3);
  ASSERT_TRUE(kernels::Run(PermuteIndicesParams{3, 3, counts.data(), n, perm.data(), sizes.data(),
                                                offs.data()})
                  .ok());
  DeviceVec<int32_t> d_counts(counts), d_perm(std::vector<int32_t>(len, 7)),
      d_sizes(std::vector<int32_t>(3)), d_offs(std::vector<int32_t>(3));
  ASSERT_TRUE(RunCuda(PermuteIndicesParams{3, 3, d_counts.get(), n, d_perm.get(), d_sizes.get(),
                                           d_offs.get()},
                      nullptr)
                  .ok());
  EXPECT_EQ(d_perm.Host(), perm);
  EXPECT_EQ(d_sizes.Host(), sizes);
  EXPECT_EQ(d_offs.Host(), offs);

  const std::vector<float> x = Random(n * h, 4);
  std::vector<float> xp(len * h);
  ASSERT_TRUE(
      kernels::Run(PermuteRowsParams{x.data(), n, h * 4, perm.data(), len, xp.data()}).ok());
  DeviceVec<float> d_x(x), d_xp(std::vector<float>(len * h, 3.0f)), d_back(x);
  ASSERT_TRUE(
      RunCuda(PermuteRowsParams{d_x.get(), n, h * 4, d_perm.get(), len, d_xp.get()}, nullptr).ok());
  EXPECT_EQ(d_xp.Host(), xp);
  ASSERT_TRUE(
      RunCuda(UnpermuteRowsParams{d_xp.get(), d_perm.get(), len, h * 4, n, d_back.get()}, nullptr)
          .ok());
  EXPECT_EQ(d_back.Host(), x);
}

TEST_F(KernelsGpuTest, RouterTopKGroupLimited) {
  const int64_t t = 300;
  const int32_t e = 64, k = 6;
  const std::vector<float> logits = Random(t * e, 5), bias = Random(e, 6);
  for (RouterGroupScore gs : {RouterGroupScore::kMax, RouterGroupScore::kTop2Sum}) {
    RouterTopKParams p;
    p.num_tokens = t, p.num_experts = e, p.top_k = k, p.expert_bias = bias.data();
    p.num_groups = 8, p.num_limited_groups = 3, p.group_score = gs, p.route_norm = true;
    p.route_scale = 2.5f, p.logits = logits.data();
    std::vector<int64_t> sel(t * k);
    std::vector<float> top(t * k);
    std::vector<int32_t> hist(e);
    p.selected = sel.data(), p.top_scores = top.data(), p.tokens_per_expert = hist.data();
    ASSERT_TRUE(kernels::Run(p).ok());
    DeviceVec<float> d_logits(logits), d_bias(bias), d_top(top);
    DeviceVec<int64_t> d_sel(sel);
    DeviceVec<int32_t> d_hist(hist);
    p.logits = d_logits.get(), p.expert_bias = d_bias.get(), p.selected = d_sel.get();
    p.top_scores = d_top.get(), p.tokens_per_expert = d_hist.get();
    ASSERT_TRUE(RunCuda(p, nullptr).ok());
    EXPECT_EQ(d_sel.Host(), sel);
    EXPECT_EQ(d_hist.Host(), hist);
    const std::vector<float> got = d_top.Host();
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], top[i], 1e-6f);
  }
}

TEST_F(KernelsGpuTest, FusedAdamWBitExact) {
  for (AdamForm form : {AdamForm::kTorch, AdamForm::kFused}) {
    for (bool w_mode : {true, false}) {
      const int64_t n = 100003;
      std::vector<float> param = Random(n, 7), grad = Random(n, 8), m = Random(n, 9),
                         v = Random(n, 10);
      for (float& x : v) x = x * x * 1e-4f;
      DeviceVec<float> dp(param), dg(grad), dm(m), dv(v);
      FusedAdamWParams p;
      p.numel = n, p.lr = 1e-3, p.weight_decay = 0.1, p.step = 5, p.form = form;
      p.adam_w_mode = w_mode;
      p.param = param.data(), p.grad = grad.data(), p.exp_avg = m.data(), p.exp_avg_sq = v.data();
      ASSERT_TRUE(kernels::Run(p).ok());
      p.param = dp.get(), p.grad = dg.get(), p.exp_avg = dm.get(), p.exp_avg_sq = dv.get();
      ASSERT_TRUE(RunCuda(p, nullptr).ok());
      EXPECT_EQ(dp.Host(), param);
      EXPECT_EQ(dm.Host(), m);
      EXPECT_EQ(dv.Host(), v);
    }
  }
}

}  // namespace
}  // namespace ucp::kernels
