// The value checks behind every option (commands/option_checks.h): one per kind, short messages.
#include "cli/commands/option_checks.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST(OptionChecks, PositiveAndNonNegativeInts) {
  for (const char* good : {"1", "8", "2147483647"})
    EXPECT_THAT(CheckPositiveInt(good), IsEmpty()) << good;
  for (const char* bad :
       {"0", "-3", "abc", "", "1.5", "2147483648", "99999999999", " 4", "4 ", "+4", "0x10"}) {
    const std::string message = CheckPositiveInt(bad);
    EXPECT_EQ(message,
              std::string("expected a whole number from 1 to 2147483647, got '") + bad + "'");
  }
  EXPECT_THAT(CheckNonNegativeInt("0"), IsEmpty());
  EXPECT_EQ(CheckNonNegativeInt("-1"), "expected a whole number from 0 to 2147483647, got '-1'");
}

TEST(OptionChecks, NonNegativeFloatIsShortAndFinite) {
  for (const char* good : {"0", "1e-6", "0.5", "3"})
    EXPECT_THAT(CheckNonNegativeFloat(good), IsEmpty()) << good;
  for (const char* bad : {"-1", "abc", "nan", "inf", "", "1e400"}) {
    EXPECT_EQ(CheckNonNegativeFloat(bad), std::string("expected a number >= 0, got '") + bad + "'");
  }
  // CLI11's own check printed DBL_MAX with 300 digits.
  EXPECT_LT(CheckNonNegativeFloat("-1").size(), 40u);
}

TEST(OptionChecks, ByteSizes) {
  for (const char* good : {"256MiB", "1G", "5GB", "65536"})
    EXPECT_THAT(CheckByteSize(good), IsEmpty()) << good;
  EXPECT_THAT(CheckByteSize("0"), HasSubstr("above 0 bytes"));
  EXPECT_THAT(CheckByteSize("0GiB"), HasSubstr("above 0 bytes"));
  EXPECT_THAT(CheckByteSize("banana"), HasSubstr("bad size 'banana'"));
}

TEST(OptionChecks, FolderNames) {
  for (const char* good : {"global_step5", "step.5", "a b"})
    EXPECT_THAT(CheckFolderName(good), IsEmpty()) << good;
  EXPECT_EQ(CheckFolderName(""), "expected a folder name, got ''");
  for (const char* bad : {".", "..", "a/b", "/abs"})
    EXPECT_THAT(CheckFolderName(bad), HasSubstr("one folder name"));
  EXPECT_THAT(CheckFolderName(std::string(256, 'x')), HasSubstr("one folder name"));
}

TEST(OptionChecks, OneOf) {
  constexpr absl::string_view kChoices[] = {"fused", "per-expert"};
  EXPECT_THAT(CheckOneOf("fused", kChoices), IsEmpty());
  EXPECT_EQ(CheckOneOf("Fused", kChoices), "expected one of fused, per-expert; got 'Fused'");
}

TEST(OptionChecks, UnknownCommandsAreNamed) {
  const std::vector<std::string> commands = {"inspect", "convert", "diff",
                                             "reshard", "export",  "verify"};
  EXPECT_EQ(UnknownCommandMessage("inspcet", commands),
            "unknown command 'inspcet'; did you mean 'inspect'?");
  EXPECT_EQ(UnknownCommandMessage("verfy", commands),
            "unknown command 'verfy'; did you mean 'verify'?");
  EXPECT_EQ(UnknownCommandMessage("insp", commands),
            "unknown command 'insp'; did you mean 'inspect'?");
  EXPECT_EQ(
      UnknownCommandMessage("banana", commands),
      "unknown command 'banana'; the commands: inspect, convert, diff, reshard, export, verify");
}

}  // namespace
}  // namespace ucp::cli
