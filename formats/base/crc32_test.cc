#include "formats/base/crc32.h"

#include <random>
#include <string>

#include "gtest/gtest.h"

namespace ucp {
namespace {

TEST(Crc32Test, KnownValues) {
  EXPECT_EQ(Crc32(absl::string_view("")), 0u);
  EXPECT_EQ(Crc32(absl::string_view("123456789")), 0xCBF43926u);  // the standard check value
}

TEST(Crc32Test, CombineEqualsWhole) {
  std::mt19937 rng(7);
  std::string data(10000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (size_t cut : {0, 1, 63, 5000, 9999, 10000}) {
    absl::string_view a(data.data(), cut), b(data.data() + cut, data.size() - cut);
    EXPECT_EQ(Crc32Combine(Crc32(a), Crc32(b), b.size()), Crc32(absl::string_view(data))) << cut;
    EXPECT_EQ(Crc32(b, Crc32(a)), Crc32(absl::string_view(data)));
  }
}

}  // namespace
}  // namespace ucp
