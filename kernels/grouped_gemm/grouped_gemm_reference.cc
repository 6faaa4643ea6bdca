// CPU reference of grouped_gemm.h. Structure (GotoBLAS, as in llm.c's matmul_forward CPU path):
// the output of every group is cut into MC x NC tiles; all tiles of all groups form one work list
// that num_threads workers drain. A tile packs KC-deep panels of A (MR rows) and B (NR columns)
// into fp32 scratch, so bf16 and the strided backward views cost the same as the forward, then a
// fixed-size MR x NR register tile accumulates over the panel (constant trip counts: GCC
// vectorises it; target_clones adds an AVX2 copy picked at load time).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/grouped_gemm/grouped_gemm.h"

namespace ucp::kernels {
namespace {

constexpr int kMR = 4, kNR = 16;
constexpr int64_t kMC = 64, kNC = 128, kKC = 256;

struct Tile {
  int32_t g;
  int64_t r0, r1, i0, j0;
};

struct Scratch {
  std::vector<float> a = std::vector<float>(kMC * kKC);
  std::vector<float> b = std::vector<float>(kNC * kKC);
  std::vector<float> acc = std::vector<float>(kMC * kNC);
};

inline float ToF32(float v) { return v; }
inline float ToF32(uint16_t v) { return Bf16ToFloat(v); }
inline void FromF32(float v, float* dst) { *dst = v; }
inline void FromF32(float v, uint16_t* dst) { *dst = FloatToBf16(v); }

// acc[MR x NR] (leading dim ldc) += ap[kc x MR]^T-panel · bp[kc x NR]-panel. GCC vector types
// (8 floats: one AVX2 register, or two SSE ones in the default clone) keep the MR x NR tile in
// registers; plain loops were vectorised across rows with shuffles instead.
typedef float V8 __attribute__((vector_size(32)));
static_assert(kNR == 16);

__attribute__((target_clones("avx2", "default"))) void MicroKernel(int64_t kc, const float* ap,
                                                                   const float* bp, float* acc,
                                                                   int64_t ldc) {
  V8 c[kMR][2] = {};
  for (int64_t l = 0; l < kc; ++l) {
    V8 b0, b1;
    std::memcpy(&b0, bp + l * kNR, sizeof b0);
    std::memcpy(&b1, bp + l * kNR + 8, sizeof b1);
    for (int r = 0; r < kMR; ++r) {
      const float a = ap[l * kMR + r];
      c[r][0] += b0 * a;
      c[r][1] += b1 * a;
    }
  }
  for (int r = 0; r < kMR; ++r) {
    for (int j = 0; j < 8; ++j) {
      acc[r * ldc + j] += c[r][0][j];
      acc[r * ldc + 8 + j] += c[r][1][j];
    }
  }
}

const void* APtr(const GroupedGemmParams& p) {
  return p.form == GroupedGemmForm::kForward ? p.x : p.dy;
}
const void* BPtr(const GroupedGemmParams& p) {
  return p.form == GroupedGemmForm::kBackwardWeight ? p.x : p.w;
}

template <typename T>
void RunTile(const GroupedGemmParams& p, const Tile& t, Scratch& s) {
  const GemmView v = MakeGemmView(p.form, p.n, p.k, t.g, t.r0, t.r1);
  const T* a = static_cast<const T*>(APtr(p)) + v.a_off;
  const T* b = static_cast<const T*>(BPtr(p)) + v.b_off;
  const int64_t mc = std::min(kMC, v.rows - t.i0), nc = std::min(kNC, v.cols - t.j0);
  const int64_t mp = (mc + kMR - 1) / kMR, np = (nc + kNR - 1) / kNR;  // panels
  std::fill(s.acc.begin(), s.acc.end(), 0.0f);
  for (int64_t l0 = 0; l0 < v.depth; l0 += kKC) {
    const int64_t kc = std::min(kKC, v.depth - l0);
    // Panels padded with zeros to MR / NR so the register tile never branches.
    for (int64_t i = 0; i < mp * kMR; ++i) {
      float* dst = s.a.data() + (i / kMR) * kc * kMR + i % kMR;
      if (i >= mc) {
        for (int64_t l = 0; l < kc; ++l) dst[l * kMR] = 0.0f;
        continue;
      }
      const T* src = a + (t.i0 + i) * v.a_rs + l0 * v.a_cs;
      for (int64_t l = 0; l < kc; ++l) dst[l * kMR] = ToF32(src[l * v.a_cs]);
    }
    for (int64_t j = 0; j < np * kNR; ++j) {
      float* dst = s.b.data() + (j / kNR) * kc * kNR + j % kNR;
      if (j >= nc) {
        for (int64_t l = 0; l < kc; ++l) dst[l * kNR] = 0.0f;
        continue;
      }
      const T* src = b + l0 * v.b_rs + (t.j0 + j) * v.b_cs;
      for (int64_t l = 0; l < kc; ++l) dst[l * kNR] = ToF32(src[l * v.b_rs]);
    }
    for (int64_t ip = 0; ip < mp; ++ip) {
      for (int64_t jp = 0; jp < np; ++jp) {
        MicroKernel(kc, s.a.data() + ip * kc * kMR, s.b.data() + jp * kc * kNR,
                    s.acc.data() + ip * kMR * kNC + jp * kNR, kNC);
      }
    }
  }
  T* c = static_cast<T*>(p.out) + v.c_off;
  for (int64_t i = 0; i < mc; ++i) {
    for (int64_t j = 0; j < nc; ++j)
      FromF32(s.acc[i * kNC + j], &c[(t.i0 + i) * v.c_rs + t.j0 + j]);
  }
}

std::vector<Tile> MakeTiles(const GroupedGemmParams& p) {
  std::vector<Tile> tiles;
  int64_t r0 = 0;
  for (int32_t g = 0; g < p.num_groups; ++g) {
    const int64_t r1 = p.offs[g];
    const GemmView v = MakeGemmView(p.form, p.n, p.k, g, r0, r1);
    for (int64_t i0 = 0; i0 < v.rows; i0 += kMC) {
      for (int64_t j0 = 0; j0 < v.cols; j0 += kNC) tiles.push_back({g, r0, r1, i0, j0});
    }
    r0 = r1;
  }
  return tiles;
}

bool MulFits(int64_t a, int64_t b) {
  return a == 0 || b <= std::numeric_limits<int64_t>::max() / 4 / a;  // bytes of fp32 fit too
}

}  // namespace

absl::Status CanImplement(const GroupedGemmParams& p) {
  if (p.num_groups < 1) return absl::InvalidArgumentError("grouped_gemm: num_groups < 1");
  if (p.m < 0 || p.n < 0 || p.k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("grouped_gemm: negative size m=", p.m, " n=", p.n, " k=", p.k));
  }
  if (!MulFits(p.m, std::max(p.n, p.k)) || !MulFits(p.n, p.k) ||
      !MulFits(p.num_groups, p.n * p.k)) {
    return absl::InvalidArgumentError("grouped_gemm: sizes overflow int64");
  }
  if (p.elem != ElemType::kF32 && p.elem != ElemType::kBF16) {
    return absl::InvalidArgumentError("grouped_gemm: unknown element type");
  }
  const bool needs_x = p.form != GroupedGemmForm::kBackwardData;
  const bool needs_w = p.form != GroupedGemmForm::kBackwardWeight;
  const bool needs_dy = p.form != GroupedGemmForm::kForward;
  if (p.offs == nullptr || p.out == nullptr || (needs_x && p.x == nullptr) ||
      (needs_w && p.w == nullptr) || (needs_dy && p.dy == nullptr)) {
    return absl::InvalidArgumentError("grouped_gemm: null offs, input or output pointer");
  }
  if (p.num_threads < 1 || p.num_threads > 256) {
    return absl::InvalidArgumentError("grouped_gemm: num_threads not in [1, 256]");
  }
  return absl::OkStatus();
}

absl::Status CheckOffsets(const GroupedGemmParams& p) {
  if (absl::Status s = CanImplement(p); !s.ok()) return s;
  int64_t prev = 0;
  for (int32_t g = 0; g < p.num_groups; ++g) {
    if (p.offs[g] < prev || p.offs[g] > p.m) {
      return absl::InvalidArgumentError(absl::StrCat("grouped_gemm: offs[", g, "]=", p.offs[g],
                                                     " not in [", prev, ", m=", p.m, "]"));
    }
    prev = p.offs[g];
  }
  return absl::OkStatus();
}

absl::Status Run(const GroupedGemmParams& p) {
  if (absl::Status s = CheckOffsets(p); !s.ok()) return s;
  const std::vector<Tile> tiles = MakeTiles(p);
  std::atomic<size_t> next{0};
  // The calling thread keeps its scratch across calls (224 KiB: malloc would mmap and fault it in
  // on every call, a cost a per-expert loop pays E times); spawned workers allocate their own.
  thread_local Scratch caller_scratch;
  auto worker = [&](Scratch& s) {
    for (size_t i; (i = next.fetch_add(1)) < tiles.size();) {
      if (p.elem == ElemType::kF32) {
        RunTile<float>(p, tiles[i], s);
      } else {
        RunTile<uint16_t>(p, tiles[i], s);
      }
    }
  };
  const size_t extra = std::min<size_t>(p.num_threads, tiles.size()) - (tiles.empty() ? 0 : 1);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < extra; ++t) {
    threads.emplace_back([&] {
      Scratch s;
      worker(s);
    });
  }
  worker(caller_scratch);
  for (std::thread& t : threads) t.join();
  return absl::OkStatus();
}

}  // namespace ucp::kernels
