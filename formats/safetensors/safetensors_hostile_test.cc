// Hostile and corrupt files: every rule of the format, each asserting the code and the message.
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/safetensors/safetensors_testutil.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::formats::safetensors {
namespace {

using ::testing::HasSubstr;
using testing::OpenBytes;
using testing::RawFile;
using ::testing::StartsWith;

void ExpectRejected(const std::string& file, absl::StatusCode code, absl::string_view fragment,
                    ReadOptions options = {}) {
  absl::Status status = OpenBytes(file, options, "hostile.safetensors").status();
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_THAT(std::string(status.message()), StartsWith("hostile.safetensors: "));
  EXPECT_THAT(std::string(status.message()), HasSubstr(std::string(fragment))) << status;
}

void ExpectDataLoss(const std::string& file, absl::string_view fragment) {
  ExpectRejected(file, absl::StatusCode::kDataLoss, fragment);
}

// One header entry.
std::string Entry(absl::string_view name, absl::string_view dtype, absl::string_view shape,
                  uint64_t begin, uint64_t end) {
  return absl::StrCat("\"", name, "\":{\"dtype\":\"", dtype, "\",\"shape\":", shape,
                      ",\"data_offsets\":[", begin, ",", end, "]}");
}

std::string Json(std::initializer_list<std::string> entries) {
  return absl::StrCat("{", absl::StrJoin(entries, ","), "}");
}

TEST(SafetensorsHostileTest, TooShortForTheLengthField) {
  for (size_t size = 0; size < 8; ++size) {
    ExpectDataLoss(std::string(size, '\0'), "too short for the 8-byte header length");
  }
}

TEST(SafetensorsHostileTest, OneTerabyteHeaderLengthIsRejectedBeforeAllocating) {
  const std::string file = RawFile("{}", "", uint64_t{1} << 40);
  ExpectDataLoss(file, "header length 1099511627776 exceeds the limit of 104857600 bytes");
  ExpectRejected(file, absl::StatusCode::kDataLoss, "exceeds the 2 bytes after the length field",
                 ReadOptions{.max_header_bytes = uint64_t{1} << 41});
  ExpectDataLoss(RawFile("{}", "", UINT64_MAX), "exceeds the limit");
  ExpectRejected(RawFile("{}", "", UINT64_MAX), absl::StatusCode::kDataLoss,
                 "bytes after the length field", ReadOptions{.max_header_bytes = UINT64_MAX});
}

TEST(SafetensorsHostileTest, HeaderAboveACustomLimit) {
  const std::string json = Json({Entry("a", "U8", "[1]", 0, 1)});
  ExpectRejected(RawFile(json, "x"), absl::StatusCode::kDataLoss, "exceeds the limit of 16 bytes",
                 ReadOptions{.max_header_bytes = 16});
  EXPECT_TRUE(OpenBytes(RawFile(json, "x"), ReadOptions{.max_header_bytes = json.size()}).ok());
}

TEST(SafetensorsHostileTest, InvalidUtf8AndJson) {
  ExpectDataLoss(RawFile("{\"\xFF\":1}", ""), "not valid UTF-8");
  ExpectDataLoss(RawFile("", ""), "does not start with '{'");
  ExpectDataLoss(RawFile("[]", ""), "does not start with '{'");
  ExpectDataLoss(RawFile("\"str\"", ""), "does not start with '{'");
  ExpectDataLoss(RawFile("{\"a\":", ""), "the tensor entry is not an object");
  ExpectDataLoss(RawFile("{} x", ""), "after the header object");
  ExpectDataLoss(RawFile(std::string("{}\0\0\0\0\0\0", 8), ""), "after the header object");
}

TEST(SafetensorsHostileTest, AcceptsJsonWhitespaceAndSpacePadding) {
  const std::string json = "{\n  " + Entry("a", "U8", "[ 2 ]", 0, 2) + "\r\n}\t  ";
  auto reader = OpenBytes(RawFile(json, "xy"));
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(reader->tensors()[0].begin, 8 + json.size());
}

TEST(SafetensorsHostileTest, EntriesOutsideTheSchema) {
  ExpectDataLoss(RawFile(R"({"w":[1,2]})", ""), "tensor 'w': header JSON at byte 5");
  ExpectDataLoss(RawFile(Json({Entry("w", "F33", "[1]", 0, 4)}), "abcd"),
                 "tensor 'w': header JSON at byte 19: unknown dtype 'F33'");
  ExpectRejected(RawFile(Json({Entry("w", "U16", "[1]", 0, 2)}), "ab"),
                 absl::StatusCode::kUnimplemented, "tensor 'w': dtype U16 is not supported");
  ExpectDataLoss(RawFile(Json({Entry("w", "F32", "[-1]", 0, 4)}), "abcd"), "negative");
  ExpectDataLoss(RawFile(Json({Entry("w", "F32", "[2.0]", 0, 8)}), std::string(8, 'x')),
                 "not an integer");
  ExpectDataLoss(RawFile(Json({Entry("w", "F32", "[\"2\"]", 0, 8)}), std::string(8, 'x')),
                 "not an integer");
  ExpectDataLoss(RawFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", ""),
                 "negative");
  ExpectDataLoss(
      RawFile(Json({Entry("w", "U8", "[2]", 0, 2), Entry("w", "U8", "[2]", 2, 4)}), "abcd"),
      "duplicate tensor name 'w'");
  ExpectDataLoss(RawFile(R"({"__metadata__":{"k":"a","k":"b"}})", ""),
                 "duplicate __metadata__ key 'k'");
  ExpectDataLoss(RawFile(R"({"__metadata__":{"k":1}})", ""),
                 "__metadata__ value of 'k' is not a string");
  ExpectDataLoss(RawFile(R"({"__metadata__":{"k":{"nested":"x"}}})", ""), "is not a string");
  std::string dims = "[1";
  for (int i = 0; i < kMaxRank; ++i) dims += ",1";
  ExpectDataLoss(RawFile(Json({Entry("w", "U8", dims + "]", 0, 1)}), "a"),
                 "shape has more than 64 elements");
}

TEST(SafetensorsHostileTest, SizesThatOverflow) {
  ExpectDataLoss(RawFile(Json({Entry("w", "F64", "[4294967296,4294967296]", 0, 0)}), ""),
                 "tensor 'w': shape [4294967296, 4294967296] has too many elements");
  ExpectDataLoss(RawFile(Json({Entry("w", "U8", "[9223372036854775807,3]", 0, 0)}), ""),
                 "too many elements");
}

TEST(SafetensorsHostileTest, HeaderLyingAboutSizes) {
  // F32 [2, 2] needs 16 bytes; the offsets claim 8 and the file holds 8.
  ExpectDataLoss(RawFile(Json({Entry("w", "F32", "[2,2]", 0, 8)}), std::string(8, 'x')),
                 "tensor 'w': data_offsets [0, 8] span 8 bytes but F32 [2, 2] needs 16");
  ExpectDataLoss(RawFile(Json({Entry("w", "BF16", "[3]", 0, 8)}), std::string(8, 'x')),
                 "span 8 bytes but BF16 [3] needs 6");
}

TEST(SafetensorsHostileTest, OffsetsReversedOrPastTheBuffer) {
  ExpectDataLoss(RawFile(Json({Entry("w", "U8", "[0]", 4, 0)}), "abcd"),
                 "tensor 'w': data_offsets [4, 0] are reversed");
  ExpectDataLoss(RawFile(Json({Entry("w", "U8", "[4]", 0, 4)}), "abc"),
                 "tensor 'w': data_offsets [0, 4] end past the 3-byte data buffer");
  ExpectDataLoss(RawFile(Json({Entry("w", "U8", "[1]", 18446744073709551615u, 0)}), "a"),
                 "reversed");
  ExpectDataLoss(
      RawFile(Json({Entry("w", "U8", "[0]", 18446744073709551615u, 18446744073709551615u)}), "a"),
      "end past the 1-byte data buffer");
}

TEST(SafetensorsHostileTest, OverlapsHolesAndUncoveredBytes) {
  ExpectDataLoss(
      RawFile(Json({Entry("a", "U8", "[4]", 0, 4), Entry("b", "U8", "[4]", 2, 6)}), "abcdef"),
      "tensor 'b': data_offsets [2, 6] overlap tensor 'a' (data_offsets [0, 4])");
  // The same bytes indexed twice (a polyglot).
  ExpectDataLoss(
      RawFile(Json({Entry("a", "U8", "[4]", 0, 4), Entry("b", "I8", "[4]", 0, 4)}), "abcd"),
      "overlap tensor 'a'");
  ExpectDataLoss(
      RawFile(Json({Entry("a", "U8", "[2]", 2, 4)}), "abcd"),
      "tensor 'a': data_offsets [2, 4] leave a hole: buffer bytes [0, 2) belong to no tensor");
  ExpectDataLoss(
      RawFile(Json({Entry("a", "U8", "[2]", 0, 2), Entry("b", "U8", "[1]", 3, 4)}), "abcd"),
      "tensor 'b': data_offsets [3, 4] leave a hole: buffer bytes [2, 3)");
  ExpectDataLoss(RawFile(Json({Entry("a", "U8", "[2]", 0, 2)}), "abcd"),
                 "the tensors cover 2 bytes of the 4-byte data buffer");
  ExpectDataLoss(RawFile("{}", "trailing"), "the tensors cover 0 bytes of the 8-byte data buffer");
  // Out of header order is fine: tensors() comes back in offset order.
  auto reader =
      OpenBytes(RawFile(Json({Entry("b", "U8", "[2]", 2, 4), Entry("z", "U8", "[0]", 2, 2),
                              Entry("a", "U8", "[2]", 0, 2), Entry("e", "U8", "[0]", 4, 4)}),
                        "abcd"));
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<std::string> names;
  for (const TensorInfo& info : reader->tensors()) names.push_back(info.name);
  EXPECT_EQ(names, (std::vector<std::string>{"a", "z", "b", "e"}));
}

TEST(SafetensorsHostileTest, DeeplyNestedJson) {
  const std::string arrays(10000, '[');
  ExpectDataLoss(RawFile(arrays, ""), "does not start with '{'");
  ExpectDataLoss(RawFile("{\"a\":" + arrays + std::string(10000, ']') + "}", ""),
                 "the tensor entry is not an object");
  ExpectDataLoss(RawFile("{\"a\":{\"shape\":" + arrays, ""), "not an integer");
  ExpectDataLoss(RawFile("{\"__metadata__\":{\"k\":" + arrays, ""), "is not a string");
  std::string objects;
  for (int i = 0; i < 10000; ++i) objects += "{\"a\":";
  ExpectDataLoss(RawFile(objects, ""), "tensor 'a': header JSON at byte 10: unknown field 'a'");
}

// A small valid file with metadata, several dtypes, a scalar and an empty tensor.
std::string SmallValidFile() {
  std::mt19937_64 rng(11);
  std::vector<testing::OwnedTensor> tensors = {
      testing::RandomTensor(rng, "weight", DType::kF32, Shape{2, 3}),
      testing::RandomTensor(rng, "scalar", DType::kBF16, Shape{}),
      testing::RandomTensor(rng, "empty", DType::kI64, Shape{0, 4}),
      testing::RandomTensor(rng, "mask", DType::kBool, Shape{5})};
  MemorySink sink;
  EXPECT_TRUE(Write(sink, testing::ToWrite(tensors), {{"format", "pt"}}).ok());
  return testing::AsString(sink.bytes());
}

TEST(SafetensorsHostileTest, TruncationAtEveryOffsetFailsCleanly) {
  const std::string file = SmallValidFile();
  ASSERT_TRUE(OpenBytes(file).ok());
  for (size_t size = 0; size < file.size(); ++size) {
    absl::Status status = OpenBytes(file.substr(0, size), {}, "cut.safetensors").status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << size << ": " << status;
    EXPECT_THAT(std::string(status.message()), StartsWith("cut.safetensors: ")) << size;
  }
  ExpectDataLoss(file + "x", "the rest belongs to no tensor");
}

TEST(SafetensorsHostileTest, RandomCorruptionNeverCrashes) {
  const std::string file = SmallValidFile();
  std::mt19937_64 rng(12);
  int accepted = 0;
  for (int iteration = 0; iteration < 20000; ++iteration) {
    std::string corrupt = file;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i) {
      const size_t at = rng() % corrupt.size();
      switch (rng() % 3) {
        case 0: corrupt[at] = static_cast<char>(rng()); break;
        case 1: corrupt[at] = "{}[]\",:0123456789-e. \\u"[rng() % 23]; break;
        default: corrupt.erase(at, 1 + rng() % 8); break;
      }
      if (corrupt.empty()) break;
    }
    absl::StatusOr<SafetensorsReader> reader = OpenBytes(corrupt);
    if (!reader.ok()) {
      EXPECT_NE(reader.status().code(), absl::StatusCode::kInternal);
      continue;
    }
    ++accepted;
    uint64_t covered = 8 + internal_safetensors::LoadLittleEndian64(
                               {reinterpret_cast<const std::byte*>(corrupt.data()), 8});
    for (const TensorInfo& info : reader->tensors()) {
      EXPECT_EQ(info.begin, covered);
      covered = info.end;
      EXPECT_TRUE(reader->Read(info).ok());
    }
    EXPECT_EQ(covered, corrupt.size());
  }
  EXPECT_GT(accepted, 0);  // flips inside tensor data keep the file valid
}

}  // namespace
}  // namespace ucp::formats::safetensors
