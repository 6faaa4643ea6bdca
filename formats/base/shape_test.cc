#include "formats/base/shape.h"

#include "gtest/gtest.h"

namespace ucp {
namespace {

TEST(ShapeTest, CountsAndStrides) {
  Shape s{2, 3, 4};
  EXPECT_EQ(*s.NumElements(), 24);
  EXPECT_EQ(*s.NumBytes(DType::kBF16), 48);
  EXPECT_EQ(s.ContiguousStrides(), (std::vector<int64_t>{12, 4, 1}));
  EXPECT_EQ(s.ToString(), "[2, 3, 4]");
  EXPECT_EQ(*Shape().NumElements(), 1);
  EXPECT_EQ(Shape().ToString(), "[]");
  EXPECT_EQ(*Shape({5, 0}).NumElements(), 0);
}

TEST(ShapeTest, HostileDims) {
  EXPECT_EQ(Shape({3, -1}).NumElements().status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Shape({int64_t{1} << 40, int64_t{1} << 40}).NumElements().status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(Shape({INT64_MAX, 2}).NumElements().status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Shape(std::vector<int64_t>(100, 1)).NumElements().status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace ucp
