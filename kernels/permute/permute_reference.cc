// CPU reference of permute.h: a literal port of TorchTitan's fill_indices_cpu.
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/permute/permute.h"

namespace ucp::kernels {
namespace {

constexpr int64_t kMaxRows = std::numeric_limits<int32_t>::max() - 1024;  // int32 indices

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("permute: ", what));
}

absl::Status CheckRows(int64_t num_rows, int64_t row_bytes, int64_t perm_len) {
  if (num_rows < 0 || num_rows > kMaxRows) return Invalid(absl::StrCat("num_rows=", num_rows));
  if (perm_len < 0 || perm_len > kMaxRows) return Invalid(absl::StrCat("perm_len=", perm_len));
  if (row_bytes < 0 || (row_bytes > 0 && std::max(num_rows, perm_len) >
                                             std::numeric_limits<int64_t>::max() / row_bytes)) {
    return Invalid(absl::StrCat("row_bytes=", row_bytes));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CanImplement(const PermuteIndicesParams& p) {
  if (p.ep_size < 1 || p.num_local_experts < 1 ||
      int64_t{p.ep_size} * p.num_local_experts > (1 << 24)) {
    return Invalid(absl::StrCat("ep_size=", p.ep_size, " num_local_experts=", p.num_local_experts));
  }
  if (p.num_rows < 0 || PermuteLength(p.num_rows, p.num_local_experts) > kMaxRows) {
    return Invalid(absl::StrCat("num_rows=", p.num_rows));
  }
  if (!p.counts || !p.perm || !p.m_sizes || !p.m_offsets) return Invalid("null pointer");
  return absl::OkStatus();
}

absl::Status Run(const PermuteIndicesParams& p) {
  if (absl::Status s = CanImplement(p); !s.ok()) return s;
  const int32_t el = p.num_local_experts, n_counts = p.ep_size * el;
  std::vector<int64_t> start(n_counts);
  int64_t sum = 0;
  for (int32_t i = 0; i < n_counts; ++i) {
    if (p.counts[i] < 0) return Invalid(absl::StrCat("counts[", i, "]=", p.counts[i]));
    start[i] = sum;
    sum += p.counts[i];
  }
  if (sum != p.num_rows) {
    return Invalid(absl::StrCat("sum(counts)=", sum, " != num_rows=", p.num_rows));
  }
  const int64_t len = PermuteLength(p.num_rows, el);
  for (int64_t i = 0; i < len; ++i) p.perm[i] = -1;
  int64_t write = 0;  // exclusive cumsum of m_e
  for (int32_t e = 0; e < el; ++e) {
    int64_t total = 0;
    for (int32_t s = 0; s < p.ep_size; ++s) total += p.counts[s * el + e];
    const int64_t m = (std::max<int64_t>(total, kPermuteAlign) + kPermuteAlign - 1) /
                      kPermuteAlign * kPermuteAlign;
    for (int32_t s = 0; s < p.ep_size; ++s) {
      const int32_t i = s * el + e;
      for (int64_t r = 0; r < p.counts[i]; ++r)
        p.perm[write + r] = static_cast<int32_t>(start[i] + r);
      write += p.counts[i];
    }
    write += m - total;  // this expert's padding stays -1
    p.m_sizes[e] = static_cast<int32_t>(m);
    p.m_offsets[e] = static_cast<int32_t>(write);
  }
  return absl::OkStatus();
}

absl::Status CanImplement(const PermuteRowsParams& p) {
  if (absl::Status s = CheckRows(p.num_rows, p.row_bytes, p.perm_len); !s.ok()) return s;
  if (!p.x || !p.perm || !p.out) return Invalid("null pointer");
  return absl::OkStatus();
}

absl::Status Run(const PermuteRowsParams& p) {
  if (absl::Status s = CanImplement(p); !s.ok()) return s;
  for (int64_t i = 0; i < p.perm_len; ++i) {
    if (p.perm[i] < -1 || p.perm[i] >= p.num_rows) {
      return Invalid(absl::StrCat("perm[", i, "]=", p.perm[i], " not in [-1, ", p.num_rows, ")"));
    }
  }
  const auto* x = static_cast<const char*>(p.x);
  auto* out = static_cast<char*>(p.out);
  for (int64_t i = 0; i < p.perm_len; ++i) {
    char* dst = out + i * p.row_bytes;
    if (p.perm[i] < 0) {
      std::memset(dst, 0, p.row_bytes);
    } else {
      std::memcpy(dst, x + p.perm[i] * p.row_bytes, p.row_bytes);
    }
  }
  return absl::OkStatus();
}

absl::Status CanImplement(const UnpermuteRowsParams& p) {
  if (absl::Status s = CheckRows(p.num_rows, p.row_bytes, p.perm_len); !s.ok()) return s;
  if (!p.y || !p.perm || !p.out) return Invalid("null pointer");
  return absl::OkStatus();
}

absl::Status Run(const UnpermuteRowsParams& p) {
  if (absl::Status s = CanImplement(p); !s.ok()) return s;
  std::vector<bool> seen(p.num_rows);
  for (int64_t i = 0; i < p.perm_len; ++i) {
    const int32_t r = p.perm[i];
    if (r < -1 || r >= p.num_rows || (r >= 0 && seen[r])) {
      return Invalid(absl::StrCat("perm[", i, "]=", r, " out of range or repeated"));
    }
    if (r >= 0) seen[r] = true;
  }
  const auto* y = static_cast<const char*>(p.y);
  auto* out = static_cast<char*>(p.out);
  if (p.num_rows > 0) std::memset(out, 0, p.num_rows * p.row_bytes);
  for (int64_t i = 0; i < p.perm_len; ++i) {
    if (p.perm[i] >= 0)
      std::memcpy(out + p.perm[i] * p.row_bytes, y + i * p.row_bytes, p.row_bytes);
  }
  return absl::OkStatus();
}

}  // namespace ucp::kernels
