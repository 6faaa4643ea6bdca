// NativeMoeLayers: module order of one expert's parameters rebuilt from param_shapes order, and
// the checks on names and counts.
#include "converters/sinks/zero/native_moe_experts.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ucp::converters::sinks {
namespace {

const std::string kL0 = "blocks.1.moe.deepspeed_moe.experts";
const std::string kL1 = "blocks.3.moe.deepspeed_moe.experts";

std::string N(const std::string& prefix, int local, const std::string& rest) {
  return prefix + ".deepspeed_experts." + std::to_string(local) + "." + rest;
}

TEST(NativeMoeLayersTest, RebuildsModuleOrderFromGroupedParamShapes) {
  // Weights group first, then biases (the fixture's two-group split), two local experts, two
  // layers.
  std::vector<std::string> names;
  for (const std::string& p : {kL0, kL1}) {
    for (int local : {0, 1}) {
      names.push_back(N(p, local, "0.weight"));
      names.push_back(N(p, local, "2.weight"));
    }
  }
  for (const std::string& p : {kL0, kL1}) {
    for (int local : {0, 1}) {
      names.push_back(N(p, local, "0.bias"));
      names.push_back(N(p, local, "2.bias"));
    }
  }
  absl::StatusOr<std::vector<NativeMoeLayer>> layers = NativeMoeLayers(names, {4, 4}, 2, "test");
  ASSERT_TRUE(layers.ok()) << layers.status();
  ASSERT_EQ(layers->size(), 2u);
  EXPECT_EQ((*layers)[0].prefix, kL0);
  EXPECT_EQ((*layers)[0].num_local, 2);
  EXPECT_EQ((*layers)[1].num_experts, 4);
  EXPECT_EQ((*layers)[1].rests, (*layers)[0].rests);
  EXPECT_EQ((*layers)[0].rests,
            (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"}));
  EXPECT_EQ((*layers)[0].LocalName(1, "2.bias"), N(kL0, 1, "2.bias"));
  EXPECT_EQ((*layers)[0].GlobalName(3, "2.bias"), kL0 + ".deepspeed_experts.3.2.bias");
}

TEST(NativeMoeLayersTest, RejectsInconsistentNamesAndCounts) {
  const std::vector<std::string> ok = {N(kL0, 0, "w"), N(kL0, 1, "w")};
  EXPECT_TRUE(NativeMoeLayers(ok, {4}, 2, "t").ok());
  // Local id beyond num_experts / ep.
  EXPECT_EQ(NativeMoeLayers({N(kL0, 0, "w"), N(kL0, 2, "w")}, {4}, 2, "t").status().code(),
            absl::StatusCode::kDataLoss);
  // num_experts not a multiple of ep; more layers than num_experts lists; fewer.
  EXPECT_EQ(NativeMoeLayers(ok, {3}, 2, "t").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(NativeMoeLayers({N(kL0, 0, "w"), N(kL1, 0, "w")}, {2}, 2, "t").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(NativeMoeLayers(ok, {4, 4}, 2, "t").status().code(), absl::StatusCode::kDataLoss);
  // A local expert missing a parameter the others have.
  EXPECT_EQ(NativeMoeLayers({N(kL0, 0, "a"), N(kL0, 0, "b"), N(kL0, 1, "a")}, {4}, 2, "t")
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
  // Not a native expert name; no local id.
  EXPECT_EQ(NativeMoeLayers({"blocks.1.fc.weight"}, {4}, 2, "t").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(NativeMoeLayers({kL0 + ".deepspeed_experts.x.w"}, {4}, 2, "t").status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace ucp::converters::sinks
