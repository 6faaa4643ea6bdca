#include "formats/base/byte_size.h"

#include "gtest/gtest.h"

namespace ucp {
namespace {

TEST(ByteSizeTest, BinarySiAndBareUnits) {
  EXPECT_EQ(*ParseByteSize("65536"), 65536u);
  EXPECT_EQ(*ParseByteSize("256MiB"), uint64_t{256} << 20);
  EXPECT_EQ(*ParseByteSize(" 2 TiB "), uint64_t{2} << 40);
  EXPECT_EQ(*ParseByteSize("1.5GiB"), uint64_t{3} << 29);
  EXPECT_EQ(*ParseByteSize("5GB"), 5000000000u);  // Hugging Face's max_shard_size is SI
  EXPECT_EQ(*ParseByteSize("500mb"), 500000000u);
  EXPECT_EQ(*ParseByteSize("20KB"), 20000u);
  EXPECT_EQ(*ParseByteSize("256M"), uint64_t{256} << 20);
  EXPECT_EQ(*ParseByteSize("64k"), uint64_t{64} << 10);
  EXPECT_EQ(*ParseByteSize("100B"), 100u);
  EXPECT_EQ(*ParseByteSize("0", /*allow_zero=*/true), 0u);
}

TEST(ByteSizeTest, RejectsNonSizes) {
  for (const char* bad : {"", "GB", "-1", "0", "0.1", "abc", "5XB", "1e30", "nan", "12 34"}) {
    EXPECT_EQ(ParseByteSize(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_NE(ParseByteSize("5XB").status().message().find("'5XB'"), absl::string_view::npos);
}

TEST(ByteSizeTest, HumanBytesUsesBinaryUnits) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(double(uint64_t{3} << 30)), "3.0 GiB");
  EXPECT_EQ(HumanBytes(5e9), "4.7 GiB");
}

}  // namespace
}  // namespace ucp
