// The coordination's bytes (dist_wire.h) as a peer may send them: whole, cut anywhere, with
// another magic, type, length or version; and the report a rank sends (DecodeReport).
#include "converters/execute/dist_wire.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/execute/dist_share.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::converters::execute {
namespace {

using ::testing::HasSubstr;

std::string Header(uint32_t magic, uint32_t type, uint64_t length) {
  std::string out;
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((magic >> (8 * i)) & 0xff));
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((type >> (8 * i)) & 0xff));
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  return out;
}

// Every frame the reader returns until it needs more bytes (or fails: then the status).
absl::StatusOr<std::vector<Frame>> Drain(FrameReader& reader) {
  std::vector<Frame> frames;
  for (;;) {
    absl::StatusOr<std::optional<Frame>> next = reader.Next();
    if (!next.ok()) return next.status();
    if (!*next) return frames;
    frames.push_back(std::move(**next));
  }
}

TEST(FrameReader, FramesCutAtEveryByteComeOutWhole) {
  const std::string stream = EncodeHello(3, 4, 0x1122334455667788) +
                             EncodeFrame(MessageType::kHeartbeat, "") +
                             EncodeFrame(MessageType::kData, std::string("a\0b", 3)) +
                             EncodeFrame(MessageType::kFailed, "rank 3: disk full");
  for (size_t step : {size_t{1}, size_t{5}, size_t{16}, size_t{17}, stream.size()}) {
    FrameReader reader("rank 3");
    std::vector<Frame> frames;
    for (size_t at = 0; at < stream.size(); at += step) {
      reader.Append(absl::string_view(stream).substr(at, step));
      absl::StatusOr<std::vector<Frame>> got = Drain(reader);
      ASSERT_TRUE(got.ok()) << got.status();
      frames.insert(frames.end(), got->begin(), got->end());
    }
    ASSERT_EQ(frames.size(), 4u) << "step " << step;
    EXPECT_EQ(frames[0].type, MessageType::kHello);
    absl::StatusOr<Hello> hello = DecodeHello(frames[0].payload, "rank 3");
    ASSERT_TRUE(hello.ok()) << hello.status();
    EXPECT_EQ(hello->version, kWireVersion);
    EXPECT_EQ(hello->rank, 3);
    EXPECT_EQ(hello->world, 4);
    EXPECT_EQ(hello->key, 0x1122334455667788u);
    EXPECT_EQ(frames[1].type, MessageType::kHeartbeat);
    EXPECT_EQ(frames[1].payload, "");
    EXPECT_EQ(frames[2].type, MessageType::kData);
    EXPECT_EQ(frames[2].payload, std::string("a\0b", 3));
    EXPECT_EQ(frames[3].type, MessageType::kFailed);
    EXPECT_EQ(frames[3].payload, "rank 3: disk full");
    EXPECT_EQ(reader.buffered(), 0u);
  }
}

TEST(FrameReader, ATruncatedFrameWaitsForTheRest) {
  const std::string frame = EncodeFrame(MessageType::kData, "payload");
  FrameReader reader("rank 1");
  reader.Append(absl::string_view(frame).substr(0, 10));  // part of the header
  absl::StatusOr<std::optional<Frame>> next = reader.Next();
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value());
  reader.Append(absl::string_view(frame).substr(10, 10));  // header and 4 payload bytes
  next = reader.Next();
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value());
  EXPECT_EQ(reader.buffered(), 20u);
  reader.Append(absl::string_view(frame).substr(20));
  next = reader.Next();
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_EQ((*next)->payload, "payload");
}

TEST(FrameReader, AnotherMagicFailsNamingThePeerAndStaysFailed) {
  FrameReader reader("rank 2");
  reader.Append("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  absl::StatusOr<std::optional<Frame>> next = reader.Next();
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(next.status().message(), HasSubstr("rank 2 sent bytes that are not a ucp frame"));
  reader.Append(EncodeFrame(MessageType::kData, "x"));  // a good frame after it is not believed
  EXPECT_FALSE(reader.Next().ok());
}

TEST(FrameReader, UnknownTypesFail) {
  for (uint32_t type : {0u, 5u, 0xffffffffu}) {
    FrameReader reader("rank 1");
    reader.Append(Header(kWireMagic, type, 0));
    absl::StatusOr<std::optional<Frame>> next = reader.Next();
    ASSERT_FALSE(next.ok()) << type;
    EXPECT_THAT(next.status().message(),
                HasSubstr(absl::StrCat("rank 1 sent a frame of unknown type ", type)));
  }
}

TEST(FrameReader, OversizedLengthFailsBeforeThePayloadIsBuffered) {
  for (uint64_t length : {kMaxMessageBytes + 1, ~uint64_t{0}, uint64_t{1} << 63}) {
    FrameReader reader("rank 5");
    reader.Append(Header(kWireMagic, static_cast<uint32_t>(MessageType::kData), length));
    absl::StatusOr<std::optional<Frame>> next = reader.Next();  // only the 16 header bytes in
    ASSERT_FALSE(next.ok()) << length;
    EXPECT_THAT(next.status().message(),
                HasSubstr(absl::StrCat("rank 5 announced a message of ", length, " bytes")));
  }
  FrameReader small("rank 5", /*max_payload=*/10);
  small.Append(EncodeFrame(MessageType::kData, std::string(10, 'x')));
  absl::StatusOr<std::optional<Frame>> at_limit = small.Next();
  ASSERT_TRUE(at_limit.ok() && at_limit->has_value());
  EXPECT_EQ((*at_limit)->payload.size(), 10u);
  small.Append(EncodeFrame(MessageType::kData, std::string(11, 'x')));
  EXPECT_FALSE(small.Next().ok());
}

TEST(DecodeHello, AnotherVersionIsNamed) {
  // Version 1 had no version field: its first word is the rank.
  std::string old(16, '\0');
  old[0] = 1;
  absl::StatusOr<Hello> hello = DecodeHello(old, "a rank at 10.0.0.2:5000");
  ASSERT_FALSE(hello.ok());
  EXPECT_EQ(hello.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(hello.status().message(),
              HasSubstr("a rank at 10.0.0.2:5000 speaks coordination protocol version 1, this "
                        "ucp version 2"));
}

TEST(DecodeHello, WrongSizesAreDataLoss) {
  const std::string good = EncodeHello(1, 2, 7).substr(kFrameHeaderBytes);
  ASSERT_EQ(good.size(), kHelloBytes);
  for (size_t size : {0, 3, 4, 19, 21, 64}) {
    std::string payload = good;
    payload.resize(size, '\0');
    absl::StatusOr<Hello> hello = DecodeHello(payload, "a rank at h:1");
    ASSERT_FALSE(hello.ok()) << size;
    EXPECT_EQ(hello.status().code(), absl::StatusCode::kDataLoss) << size;
    EXPECT_THAT(hello.status().message(),
                HasSubstr(absl::StrCat("a rank at h:1 sent a hello of ", size, " bytes, not 20")));
  }
}

TEST(DecodeHello, RanksAreSigned) {
  absl::StatusOr<Hello> hello = DecodeHello(EncodeHello(-1, -7, 0).substr(kFrameHeaderBytes), "p");
  ASSERT_TRUE(hello.ok());
  EXPECT_EQ(hello->rank, -1);  // RankGroup::Join refuses it as out of range
  EXPECT_EQ(hello->world, -7);
}

TEST(FailureText, IsBoundedPrintableAndNamesTheSender) {
  EXPECT_EQ(FailureText("rank 2: disk full", 2), "rank 2: disk full");
  EXPECT_EQ(FailureText("rank 2 died (connection closed)", 2), "rank 2 died (connection closed)");
  EXPECT_EQ(FailureText("rank 1: it was rank 1", 2), "rank 2: rank 1: it was rank 1");
  EXPECT_EQ(FailureText("rank 22: x", 2), "rank 2: rank 22: x");
  EXPECT_EQ(FailureText("rank 2", 2), "rank 2: rank 2");
  EXPECT_EQ(FailureText("", 3), "rank 3: (empty)");
  EXPECT_EQ(FailureText("rank 1 died", -1), "rank 1 died");  // from rank 0: any rank
  EXPECT_EQ(FailureText(std::string("a\x1b[2J\nb\0c\xff", 10), -1), "a?[2J?b?c?");
  const std::string text = FailureText(std::string(100000, 'x'), -1);
  EXPECT_EQ(text, std::string(kMaxFailureBytes, 'x') + " [...]");
}

TEST(DecodeReport, OnlyTheExactShapeOfTheShareIsAccepted) {
  RankWork work;
  work.batches = {{Segment{}, Segment{}}, {Segment{}}};
  work.written_files = {4};
  const RankReport report{{1, 2, 0xffffffff}, {{"", 123456789012, 42}}};
  const std::string bytes = EncodeReport(report);
  ASSERT_EQ(bytes.size(), 3 * 4 + 12u);
  absl::StatusOr<RankReport> decoded = DecodeReport(bytes, work, 3);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->crcs, report.crcs);
  ASSERT_EQ(decoded->written.size(), 1u);
  EXPECT_EQ(decoded->written[0].size, 123456789012u);
  EXPECT_EQ(decoded->written[0].crc32, 42u);
  for (size_t size : {size_t{0}, bytes.size() - 1, bytes.size() + 1, bytes.size() + 12}) {
    std::string cut = bytes;
    cut.resize(size, '\0');
    absl::StatusOr<RankReport> bad = DecodeReport(cut, work, 3);
    ASSERT_FALSE(bad.ok()) << size;
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(bad.status().message(), HasSubstr(absl::StrCat("rank 3 reported ", size,
                                                               " bytes of results; its share "
                                                               "needs 24")));
  }
}

}  // namespace
}  // namespace ucp::converters::execute
