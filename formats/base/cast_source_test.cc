// CastingSource: any byte range, read in any split, equals the whole tensor cast at once; the
// element casts themselves are checked against torch in tests/interop/test_export_interop.py.
#include "formats/base/cast_source.h"

#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace ucp {
namespace {

std::vector<std::byte> Floats(const std::vector<float>& v) {
  std::vector<std::byte> out(v.size() * 4);
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

TEST(CastElementsTest, KnownValues) {
  const std::vector<std::byte> in = Floats({1.0f, -2.5f, 65520.0f, 1e-8f, 3.14159265f});
  std::vector<uint16_t> bf(5), h(5);
  CastElements(DType::kF32, in.data(), DType::kBF16, reinterpret_cast<std::byte*>(bf.data()), 5);
  CastElements(DType::kF32, in.data(), DType::kF16, reinterpret_cast<std::byte*>(h.data()), 5);
  EXPECT_EQ(bf[0], 0x3F80);
  EXPECT_EQ(bf[1], 0xC020);
  EXPECT_EQ(bf[4], 0x4049);  // 3.14159 rounds to 3.140625
  EXPECT_EQ(h[0], 0x3C00);
  EXPECT_EQ(h[1], 0xC100);
  EXPECT_EQ(h[2], 0x7C00);  // >= 65520 overflows to inf
  EXPECT_EQ(h[3], 0x0000);  // below half's smallest subnormal / 2
}

TEST(CastingSourceTest, EveryRangeEqualsTheWholeCast) {
  const int64_t n = 1000;
  std::vector<float> v(n);
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 10.0f);
  for (float& x : v) x = dist(rng);
  const std::vector<std::byte> bytes = Floats(v);
  std::vector<std::byte> want(n * 2);
  CastElements(DType::kF32, bytes.data(), DType::kBF16, want.data(), n);
  // The input split over three runs of two sources, at odd offsets.
  std::vector<std::byte> padded(8);
  padded.insert(padded.end(), bytes.begin(), bytes.end());
  auto a = MemorySource(Buffer::FromVector(std::vector<std::byte>(padded)));
  auto b = MemorySource(Buffer::FromVector(std::vector<std::byte>(bytes)));
  absl::StatusOr<std::shared_ptr<ByteSource>> src =
      CastingSource({{a, 8, 1204}, {b, 1204, 1600}, {a, 8 + 2804, 4000 - 2804}}, DType::kF32,
                    DType::kBF16, n, "<t>");
  ASSERT_TRUE(src.ok()) << src.status();
  ASSERT_EQ((*src)->Size(), static_cast<uint64_t>(n * 2));
  std::uniform_int_distribution<uint64_t> pos(0, n * 2);
  for (int i = 0; i < 300; ++i) {
    uint64_t lo = pos(rng), hi = pos(rng);
    if (lo > hi) std::swap(lo, hi);
    std::vector<std::byte> got(hi - lo);
    ASSERT_TRUE((*src)->ReadAt(lo, absl::MakeSpan(got)).ok());
    ASSERT_EQ(0, std::memcmp(got.data(), want.data() + lo, got.size())) << lo << ".." << hi;
  }
  std::vector<std::byte> one(1);
  EXPECT_EQ((*src)->ReadAt(n * 2, absl::MakeSpan(one)).code(), absl::StatusCode::kOutOfRange);
}

TEST(CastingSourceTest, RejectsWrongSizesAndDtypes) {
  auto a = MemorySource(Buffer::FromVector(std::vector<std::byte>(16)));
  EXPECT_EQ(CastingSource({{a, 0, 12}}, DType::kF32, DType::kBF16, 4, "t").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CastingSource({{a, 0, 16}}, DType::kI64, DType::kBF16, 2, "t").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CastingSource({{nullptr, 0, 16}}, DType::kF32, DType::kBF16, 4, "t").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CastingSource({{a, 0, 16}}, DType::kF32, DType::kF16, 4, "t").ok());
}

}  // namespace
}  // namespace ucp
