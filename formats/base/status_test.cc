#include "formats/base/status.h"

#include <cerrno>

#include "gtest/gtest.h"

namespace ucp {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::Status UseMacros(int x, int* out) {
  UCP_ASSIGN_OR_RETURN(int h, Half(x));
  UCP_RETURN_IF_ERROR_CTX(Half(h).status(), "second half");
  *out = h;
  return absl::OkStatus();
}

TEST(StatusTest, MacrosPropagateAndAddContext) {
  int out = 0;
  EXPECT_TRUE(UseMacros(8, &out).ok());
  EXPECT_EQ(out, 4);
  absl::Status s = UseMacros(3, &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "odd");
  s = UseMacros(6, &out);
  EXPECT_EQ(s.message(), "second half: odd");
}

TEST(StatusTest, WithContextKeepsCodeAndOk) {
  EXPECT_TRUE(WithContext(absl::OkStatus(), "x").ok());
  absl::Status s = WithContext(absl::DataLossError("bad crc"), "file a.pt: key b");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), "file a.pt: key b: bad crc");
}

TEST(StatusTest, ErrnoMapping) {
  EXPECT_EQ(ErrnoToStatus(ENOENT, "open x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrnoToStatus(ENOSPC, "w").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrnoToStatus(EIO, "w").code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(ErrnoToStatus(ENOENT, "open x").message().find("open x: "), std::string::npos);
}

TEST(StatusDeathTest, CheckAborts) {
  EXPECT_DEATH({ UCP_CHECK(1 + 1 == 3) << "math"; }, "UCP_CHECK failed: 1 \\+ 1 == 3 math");
}

TEST(StatusTest, UsageErrorsKeepTheirMarkThroughContext) {
  const absl::Status usage = UsageError("dp 0 is not in [1, 1048576]");
  EXPECT_EQ(usage.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(IsUsageError(usage));
  const absl::Status wrapped = WithContext(usage, "reshard");
  EXPECT_TRUE(IsUsageError(wrapped));
  EXPECT_EQ(wrapped.message(), "reshard: dp 0 is not in [1, 1048576]");
  EXPECT_FALSE(IsUsageError(absl::InvalidArgumentError("not a torch.save file")));
  EXPECT_TRUE(IsUsageError(AsUsageError(absl::InvalidArgumentError("x"))));
  EXPECT_TRUE(AsUsageError(absl::OkStatus()).ok());
}

}  // namespace
}  // namespace ucp
