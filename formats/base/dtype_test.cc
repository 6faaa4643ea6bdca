#include "formats/base/dtype.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace ucp {
namespace {

TEST(DTypeTest, EveryDTypeRoundTripsThroughEveryName) {
  for (int i = 0; i < kNumDTypes; ++i) {
    DType d = static_cast<DType>(i);
    EXPECT_EQ(DTypeFromName(DTypeName(d)), d);
    EXPECT_EQ(DTypeFromSafetensorsName(SafetensorsName(d)), d);
    EXPECT_EQ(DTypeFromTorchDTypeName(TorchDTypeName(d)), d);
    if (auto storage = TorchStorageName(d)) {
      EXPECT_EQ(DTypeFromTorchStorage(*storage), d);
    }
    EXPECT_EQ(DTypeLayout(d).bytes, DTypeSize(d));
  }
}

TEST(DTypeTest, KnownNames) {
  EXPECT_EQ(DTypeSize(DType::kBF16), 2);
  EXPECT_EQ(*TorchStorageName(DType::kBF16), "BFloat16Storage");
  EXPECT_EQ(SafetensorsName(DType::kF8E4M3), "F8_E4M3");
  EXPECT_FALSE(TorchStorageName(DType::kF8E5M2).has_value());
  EXPECT_EQ(DTypeFromTorchStorage("FloatStorage"), DType::kF32);
  EXPECT_FALSE(DTypeFromTorchStorage("ComplexFloatStorage").has_value());
  EXPECT_FALSE(DTypeFromSafetensorsName("").has_value());
  EXPECT_EQ(DTypeFromTorchDTypeName("half"), DType::kF16);
  EXPECT_EQ(DTypeLayout(DType::kBF16).exponent_bits, 8);
  EXPECT_EQ(DTypeLayout(DType::kBF16).mantissa_bits, 7);
}

TEST(DTypeTest, ElementAsDouble) {
  auto bytes = [](std::initializer_list<int> b) {
    std::vector<std::byte> v;
    for (int x : b) v.push_back(static_cast<std::byte>(x));
    return v;
  };
  EXPECT_EQ(ElementAsDouble(DType::kBF16, bytes({0x80, 0x3F}).data()), 1.0);   // 0x3F80
  EXPECT_EQ(ElementAsDouble(DType::kBF16, bytes({0xC0, 0xC0}).data()), -6.0);  // 0xC0C0
  EXPECT_EQ(ElementAsDouble(DType::kF16, bytes({0x00, 0x3C}).data()), 1.0);    // 0x3C00
  EXPECT_EQ(ElementAsDouble(DType::kF16, bytes({0x01, 0x00}).data()),
            std::ldexp(1.0, -24));  // subnormal
  EXPECT_TRUE(std::isinf(ElementAsDouble(DType::kF16, bytes({0x00, 0x7C}).data())));
  EXPECT_EQ(ElementAsDouble(DType::kF8E4M3, bytes({0x7E}).data()), 448.0);  // max finite
  EXPECT_TRUE(std::isnan(ElementAsDouble(DType::kF8E4M3, bytes({0x7F}).data())));
  EXPECT_EQ(ElementAsDouble(DType::kF8E5M2, bytes({0x3C}).data()), 1.0);
  EXPECT_EQ(ElementAsDouble(DType::kI16, bytes({0xFE, 0xFF}).data()), -2.0);
  EXPECT_EQ(ElementAsDouble(DType::kBool, bytes({0x02}).data()), 1.0);
}

}  // namespace
}  // namespace ucp
