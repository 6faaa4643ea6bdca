#include "formats/safetensors/header_json.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "formats/base/shape.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace ucp::internal_safetensors {
namespace {

using ::testing::HasSubstr;

absl::Status ParseStatus(absl::string_view text) { return ParseHeaderJson(text).status(); }

void ExpectDataLoss(absl::string_view text, absl::string_view fragment) {
  absl::Status status = ParseStatus(text);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << text << " → " << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(std::string(fragment))) << text;
}

TEST(SafetensorsHeaderJsonTest, ParsesEntriesAndMetadataInOrder) {
  auto parsed = ParseHeaderJson(R"({ "b" : {"shape":[2, 3],"dtype":"BF16","data_offsets":[0,12]},)"
                                "\n\t\"__metadata__\":{\"z\":\"1\",\"a\":\"\"},\r\n"
                                R"("a":{"dtype":"BOOL","shape":[],"data_offsets":[12,13]}}   )");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->entries.size(), 2u);
  EXPECT_EQ(parsed->entries[0].name, "b");
  EXPECT_EQ(parsed->entries[0].dtype, DType::kBF16);
  EXPECT_EQ(parsed->entries[0].dims, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(parsed->entries[0].begin, 0u);
  EXPECT_EQ(parsed->entries[0].end, 12u);
  EXPECT_EQ(parsed->entries[1].name, "a");
  EXPECT_TRUE(parsed->entries[1].dims.empty());
  using Pair = std::pair<std::string, std::string>;
  EXPECT_EQ(parsed->metadata, (std::vector<Pair>{{"z", "1"}, {"a", ""}}));
}

TEST(SafetensorsHeaderJsonTest, DecodesEscapes) {
  auto parsed = ParseHeaderJson(
      R"({"a\"\\\/\b\f\n\r\t\u00e9\u20AC\ud83d\ude00\u0000":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->entries[0].name,
            std::string("a\"\\/\b\f\n\r\t\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\0", 19));
}

TEST(SafetensorsHeaderJsonTest, AcceptsLargestIntegers) {
  auto parsed = ParseHeaderJson(
      R"({"a":{"dtype":"U8","shape":[0,9223372036854775807],"data_offsets":[18446744073709551615,0]}})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->entries[0].dims[1], INT64_MAX);
  EXPECT_EQ(parsed->entries[0].begin, UINT64_MAX);
}

TEST(SafetensorsHeaderJsonTest, RejectsBrokenSyntax) {
  ExpectDataLoss("", "does not start with '{'");
  ExpectDataLoss(" {}", "does not start with '{'");
  ExpectDataLoss("[]", "does not start with '{'");
  ExpectDataLoss("{", "expected a key string");
  ExpectDataLoss("{}x", "after the header object");
  ExpectDataLoss("{}{}", "after the header object");
  ExpectDataLoss(R"({"a")", "expected ':'");
  ExpectDataLoss(R"({"a)", "unterminated string");
  ExpectDataLoss(R"({a:1})", "expected a key string");
  ExpectDataLoss(R"({"__metadata__":{},})", "expected a key string");
  ExpectDataLoss(R"({"__metadata__":{} "a":1})", "expected ',' or '}'");
  ExpectDataLoss("{\"a\tb\":1}", "control byte");
  ExpectDataLoss(R"({"\x":1})", "invalid escape");
  ExpectDataLoss(R"({"\u12G4":1})", "invalid hex digit");
  ExpectDataLoss(R"({"\u12)", "truncated \\u escape");
  ExpectDataLoss(R"({"\ud83d":1})", "unpaired high surrogate");
  ExpectDataLoss(R"({"\ud83d\u0041":1})", "unpaired high surrogate");
  ExpectDataLoss(R"({"\ude00":1})", "unpaired low surrogate");
  ExpectDataLoss("{\"a\":{\"dtype\":\"F32\",\"shape\":[1 2]", "expected ',' or ']'");
  ExpectDataLoss(std::string("{}\0", 3), "after the header object");
}

TEST(SafetensorsHeaderJsonTest, RejectsInvalidUtf8) {
  for (const char* bad : {"\x80", "\xC0\x80", "\xC3", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xFF",
                          "\xE2\x82", "\xF0\x82\x82\xAC"}) {
    EXPECT_FALSE(IsValidUtf8(bad)) << bad;
    ExpectDataLoss(absl::StrCat("{\"", bad, "\":1}"), "not valid UTF-8");
  }
  EXPECT_TRUE(IsValidUtf8("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF"));
}

TEST(SafetensorsHeaderJsonTest, RejectsSchemaViolations) {
  ExpectDataLoss(R"({"a":1})",
                 "tensor 'a': header JSON at byte 5: the tensor entry is not an object");
  ExpectDataLoss(R"({"a":{"dtype":"F32","shape":[1]}})", "missing field 'data_offsets'");
  ExpectDataLoss(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", "missing field 'shape'");
  ExpectDataLoss(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", "missing field 'dtype'");
  ExpectDataLoss(R"({"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                 "duplicate field 'dtype'");
  ExpectDataLoss(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}})",
                 "unknown field 'extra'");
  ExpectDataLoss(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", "[begin, end]");
  ExpectDataLoss(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})",
                 "data_offsets has more than 2 elements");
  ExpectDataLoss(R"({"a":{"dtype":32,"shape":[1],"data_offsets":[0,4]}})", "dtype is not a string");
  ExpectDataLoss(R"({"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})",
                 "unknown dtype 'f32'");
  ExpectDataLoss(R"({"a":{"dtype":"F32","shape":{},"data_offsets":[0,4]}})",
                 "shape is not an array");
  ExpectDataLoss(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "is negative");
  ExpectDataLoss(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", "not an integer");
  ExpectDataLoss(R"({"a":{"dtype":"F32","shape":[1e2],"data_offsets":[0,4]}})", "not an integer");
  ExpectDataLoss(R"({"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,4]}})", "not an integer");
  ExpectDataLoss(R"({"a":{"dtype":"F32","shape":[null],"data_offsets":[0,4]}})", "not an integer");
  ExpectDataLoss(R"({"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}})", "leading zero");
  ExpectDataLoss(R"({"a":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,0]}})",
                 "too large");
  ExpectDataLoss(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551616]}})",
                 "does not fit in 64 bits");
  ExpectDataLoss(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{}})",
                 "duplicate tensor name 'a'");
  ExpectDataLoss(R"({"__metadata__":{},"__metadata__":{}})", "duplicate key \"__metadata__\"");
  ExpectDataLoss(R"({"__metadata__":[]})", "__metadata__ is not an object");
  ExpectDataLoss(R"({"__metadata__":{"k":"v","k":"w"}})", "duplicate __metadata__ key 'k'");
  for (const char* value : {"1", "null", "true", "{}", "[\"v\"]"}) {
    ExpectDataLoss(absl::StrCat(R"({"__metadata__":{"k":)", value, "}}"),
                   "__metadata__ value of 'k' is not a string");
  }
}

TEST(SafetensorsHeaderJsonTest, RankIsBounded) {
  std::string dims = "1";
  for (int i = 1; i < kMaxRank; ++i) dims += ",1";
  auto at_limit = ParseHeaderJson(
      absl::StrCat(R"({"a":{"dtype":"U8","shape":[)", dims, R"(],"data_offsets":[0,1]}})"));
  ASSERT_TRUE(at_limit.ok()) << at_limit.status();
  EXPECT_EQ(at_limit->entries[0].dims.size(), static_cast<size_t>(kMaxRank));
  ExpectDataLoss(
      absl::StrCat(R"({"a":{"dtype":"U8","shape":[)", dims, R"(,1],"data_offsets":[0,1]}})"),
      "shape has more than 64 elements");
}

TEST(SafetensorsHeaderJsonTest, SpecDTypesWithoutUcpTypeAreUnimplemented) {
  for (const char* name : {"U16", "U32", "U64", "C64", "F8_E8M0"}) {
    absl::Status status = ParseStatus(
        absl::StrCat(R"({"a":{"dtype":")", name, R"(","shape":[1],"data_offsets":[0,2]}})"));
    EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << name;
    EXPECT_THAT(std::string(status.message()), HasSubstr(name));
    EXPECT_THAT(std::string(status.message()), HasSubstr("tensor 'a'"));
  }
}

TEST(SafetensorsHeaderJsonTest, DeepNestingIsASyntaxErrorNotARecursion) {
  constexpr int kDepth = 10000;
  const std::string arrays(kDepth, '[');
  const std::string objects = [&] {
    std::string s;
    for (int i = 0; i < kDepth; ++i) s += "{\"k\":";
    return s;
  }();
  ExpectDataLoss(arrays, "does not start with '{'");
  ExpectDataLoss("{" + arrays, "expected a key string");
  ExpectDataLoss(R"({"a":)" + arrays, "the tensor entry is not an object");
  ExpectDataLoss(R"({"a":)" + objects, "unknown field 'k'");
  ExpectDataLoss(R"({"a":{"shape":)" + arrays, "not an integer");
  ExpectDataLoss(R"({"a":{"data_offsets":)" + arrays, "not an integer");
  ExpectDataLoss(R"({"__metadata__":)" + arrays, "__metadata__ is not an object");
  ExpectDataLoss(R"({"__metadata__":{"k":)" + arrays, "is not a string");
  ExpectDataLoss(R"({"__metadata__":)" + objects, "is not a string");
}

TEST(SafetensorsHeaderJsonTest, SerializeMatchesTheCompactReferenceLayout) {
  ParsedHeader header;
  header.entries.push_back(HeaderEntry{"attn.0", DType::kF32, {1, 2, 3}, 0, 24});
  EXPECT_EQ(SerializeHeaderJson(header),
            R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})");
  header.metadata = {{"format", "pt"}};
  header.entries.push_back(HeaderEntry{"s", DType::kF8E4M3, {}, 24, 25});
  EXPECT_EQ(SerializeHeaderJson(header),
            R"({"__metadata__":{"format":"pt"},"attn.0":{"dtype":"F32","shape":[1,2,3],)"
            R"("data_offsets":[0,24]},"s":{"dtype":"F8_E4M3","shape":[],"data_offsets":[24,25]}})");
  EXPECT_EQ(SerializeHeaderJson(ParsedHeader{}), "{}");
}

TEST(SafetensorsHeaderJsonTest, SerializedStringsRoundTripAndAreStandardJson) {
  std::string every_byte;
  for (int c = 1; c < 0x80; ++c) every_byte.push_back(static_cast<char>(c));
  every_byte += std::string("\0\xC3\xA9\xF0\x9F\x98\x80", 7);
  ParsedHeader header;
  header.metadata = {{every_byte, every_byte}, {"", ""}};
  header.entries.push_back(HeaderEntry{every_byte, DType::kBool, {0}, 0, 0});
  const std::string json = SerializeHeaderJson(header);

  auto parsed = ParseHeaderJson(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->metadata, header.metadata);
  EXPECT_EQ(parsed->entries[0].name, every_byte);

  // An independent parser reads the same values.
  nlohmann::json doc = nlohmann::json::parse(json);
  EXPECT_EQ(doc["__metadata__"][every_byte].get<std::string>(), every_byte);
  EXPECT_EQ(doc[every_byte]["dtype"].get<std::string>(), "BOOL");
  EXPECT_EQ(doc[every_byte]["shape"], nlohmann::json::array({0}));
}

TEST(SafetensorsHeaderJsonTest, QuoteForMessageEscapesAndTruncates) {
  EXPECT_EQ(QuoteForMessage("a\nb\\"), "'a\\x0ab\\x5c'");
  const std::string long_name = std::string(99, 'x') + "\xC3\xA9" + "tail";
  EXPECT_EQ(QuoteForMessage(long_name), "'" + std::string(99, 'x') + "...'");
}

TEST(SafetensorsHeaderJsonTest, LittleEndian64) {
  std::string bytes;
  AppendLittleEndian64(0x0102030405060708u, bytes);
  EXPECT_EQ(bytes, "\x08\x07\x06\x05\x04\x03\x02\x01");
  EXPECT_EQ(LoadLittleEndian64({reinterpret_cast<const std::byte*>(bytes.data()), 8}),
            0x0102030405060708u);
}

}  // namespace
}  // namespace ucp::internal_safetensors
