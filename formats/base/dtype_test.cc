#include "formats/base/dtype.h"

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

}  // namespace
}  // namespace ucp
