#include "formats/zip/zip_writer.h"

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "formats/base/crc32.h"
#include "formats/zip/zip_reader.h"
#include "formats/zip/zip_testutil.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::formats::zip {
namespace {

using testing::AsBytes;
using ::testing::HasSubstr;
using testing::SparseImage;
using testing::SparseSink;
using testing::SparseSource;

std::vector<std::byte> RandomBytes(size_t n, std::mt19937_64& rng) {
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  return out;
}

// Index of the first differing byte, or -1.
int64_t FirstDifference(absl::Span<const std::byte> a, absl::Span<const std::byte> b) {
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (a[i] != b[i]) return static_cast<int64_t>(i);
  }
  return a.size() == b.size() ? -1 : static_cast<int64_t>(std::min(a.size(), b.size()));
}

TEST(ZipWriter, RoundTripRandomSizes) {
  std::mt19937_64 rng(42);
  const size_t sizes[] = {0, 1, 63, 64, 65, 100000, 7, 0};
  std::vector<std::vector<std::byte>> payloads;
  MemorySink sink("roundtrip.pt");
  ZipWriter writer(&sink);
  std::vector<uint64_t> predicted;
  for (size_t i = 0; i < std::size(sizes); ++i) {
    payloads.push_back(RandomBytes(sizes[i], rng));
    const std::string name = absl::StrCat("archive/data/", i);
    predicted.push_back(writer.NextPayloadOffset(name, sizes[i]));
    ASSERT_TRUE(writer.AddRecord(name, payloads.back()).ok());
  }
  ASSERT_TRUE(writer.Finish().ok());
  EXPECT_FALSE(sink.committed());  // Finish does not commit

  auto reader = ZipReader::Open(MemorySource(Buffer::FromVector(sink.TakeBytes())));
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_EQ(reader->entries().size(), std::size(sizes));
  EXPECT_TRUE(reader->VerifyAll().ok());
  for (size_t i = 0; i < std::size(sizes); ++i) {
    const ZipEntry& e = reader->entries()[i];
    EXPECT_EQ(e.name, absl::StrCat("archive/data/", i));
    EXPECT_EQ(e.size, sizes[i]);
    EXPECT_EQ(e.data_offset, predicted[i]);
    EXPECT_EQ(e.data_offset % kPayloadAlignment, 0u);
    EXPECT_EQ(e.crc32, Crc32(payloads[i]));
    auto data = reader->Read(e);
    ASSERT_TRUE(data.ok());
    EXPECT_TRUE(std::equal(data->span().begin(), data->span().end(), payloads[i].begin(),
                           payloads[i].end()));
  }
}

TEST(ZipWriter, StreamingPiecesMatchAddRecord) {
  std::mt19937_64 rng(7);
  const std::vector<std::byte> big = RandomBytes(300000, rng);
  const std::vector<std::byte> small = RandomBytes(65, rng);
  MemorySink whole, streamed, combined;
  {
    ZipWriter w(&whole);
    ASSERT_TRUE(w.AddRecord("a/data.pkl", small).ok());
    ASSERT_TRUE(w.AddRecord("a/data/0", big).ok());
    ASSERT_TRUE(w.Finish().ok());
  }
  for (bool precomputed : {false, true}) {
    MemorySink& sink = precomputed ? combined : streamed;
    ZipWriter w(&sink);
    ASSERT_TRUE(w.AddRecord("a/data.pkl", small).ok());
    ASSERT_TRUE(w.BeginRecord("a/data/0", big.size()).ok());
    absl::Span<const std::byte> rest(big);
    while (!rest.empty()) {
      const size_t n = std::min<size_t>(rest.size(), rng() % 5000);
      absl::Span<const std::byte> piece = rest.first(n);
      ASSERT_TRUE(
          (precomputed ? w.AppendToRecord(piece, Crc32(piece)) : w.AppendToRecord(piece)).ok());
      rest.remove_prefix(n);
    }
    ASSERT_TRUE(w.EndRecord().ok());
    ASSERT_TRUE(w.Finish().ok());
  }
  EXPECT_EQ(whole.bytes(), streamed.bytes());
  EXPECT_EQ(whole.bytes(), combined.bytes());
}

// torch 1.13's own bytes: re-writing each fixture's records in order reproduces the file exactly.
TEST(ZipWriter, RewritesEveryFixtureByteForByte) {
  const std::vector<std::string> paths = testing::FixtureArchives();
  ASSERT_GT(paths.size(), 100u);
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    auto source = OpenFileSource(path);
    ASSERT_TRUE(source.ok());
    auto reader = ZipReader::Open(*source);
    ASSERT_TRUE(reader.ok()) << reader.status();
    MemorySink sink;
    ZipWriter writer(&sink);
    for (const ZipEntry& e : reader->entries()) {
      auto data = reader->Read(e);
      ASSERT_TRUE(data.ok());
      EXPECT_EQ(writer.NextPayloadOffset(e.name, e.size), e.data_offset);
      ASSERT_TRUE(writer.AddRecord(e.name, data->span()).ok());
    }
    ASSERT_TRUE(writer.Finish().ok());
    const Buffer original = *(*source)->Map();
    EXPECT_EQ(FirstDifference(sink.bytes(), original.span()), -1)
        << "sizes " << sink.bytes().size() << " vs " << original.size();
  }
}

// Appends `size` zero bytes to the open record without storing them, using precomputed CRCs.
void AppendZeros(ZipWriter& writer, SparseSink& sink, uint64_t size) {
  static const std::vector<std::byte> zeros(size_t{1} << 20);
  static const uint32_t zeros_crc = Crc32(zeros);
  sink.set_discard(true);
  for (uint64_t done = 0; done < size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(size - done, zeros.size()));
    absl::Span<const std::byte> piece(zeros.data(), n);
    ASSERT_TRUE(writer.AppendToRecord(piece, n == zeros.size() ? zeros_crc : Crc32(piece)).ok());
    done += n;
  }
  sink.set_discard(false);
}

// The ZIP64 path against torch 1.13's bytes (testdata/make_zip64_golden.py): an 8 GiB archive with
// a 0xFFFFFFFF-byte record, a record whose size and offset are both large, and small and empty
// (descriptor-less) records past 4 GiB. Nothing is stored but the headers and the small payloads.
TEST(ZipWriter, Zip64MatchesTorchBytes) {
  auto golden =
      ZipReader::Open(std::make_shared<SparseSource>(testing::Torch113Zip64Image(), "big2.pt"));
  ASSERT_TRUE(golden.ok()) << golden.status();
  ASSERT_EQ(golden->entries().size(), 6u);  // data.pkl, data/0-3, version
  EXPECT_EQ(golden->entries()[1].size, 0xFFFFFFFFu);
  EXPECT_EQ(golden->entries()[2].size, uint64_t{0xFFFFFFFF} + 100);
  EXPECT_GT(golden->entries()[2].local_header_offset, 0xFFFFFFFFu);

  SparseSink sink;
  ZipWriter writer(&sink);
  for (const ZipEntry& e : golden->entries()) {
    EXPECT_EQ(writer.NextPayloadOffset(e.name, e.size), e.data_offset) << e.name;
    if (e.size < (1u << 20)) {
      auto data = golden->Read(e);
      ASSERT_TRUE(data.ok());
      ASSERT_TRUE(writer.AddRecord(e.name, data->span()).ok());
      EXPECT_TRUE(golden->VerifyCrc(e).ok()) << e.name;
    } else {
      ASSERT_TRUE(writer.BeginRecord(e.name, e.size).ok());
      AppendZeros(writer, sink, e.size);
      ASSERT_TRUE(writer.EndRecord().ok());
    }
  }
  ASSERT_TRUE(writer.Finish().ok());
  ASSERT_EQ(sink.Size(), testing::kGoldenFileSize);
  for (const testing::GoldenRegion& r : testing::kGoldenRegions) {
    const std::vector<std::byte> expected = testing::FromHex(r.hex);
    std::vector<std::byte> actual(expected.size());
    sink.image().CopyTo(r.offset, absl::MakeSpan(actual));
    EXPECT_EQ(FirstDifference(actual, expected), -1) << "region at " << r.offset;
  }
  // And the reader sees the written archive as torch's.
  auto reread = ZipReader::Open(std::make_shared<SparseSource>(sink.image(), "written.pt"));
  ASSERT_TRUE(reread.ok()) << reread.status();
  ASSERT_EQ(reread->entries().size(), golden->entries().size());
  for (size_t i = 0; i < golden->entries().size(); ++i) {
    EXPECT_EQ(reread->entries()[i].data_offset, golden->entries()[i].data_offset);
    EXPECT_EQ(reread->entries()[i].crc32, golden->entries()[i].crc32);
  }
}

// More than 65535 members: the classic end record saturates and the ZIP64 record is used.
TEST(ZipWriter, ManyEntriesUseZip64Counts) {
  MemorySink sink;
  ZipWriter writer(&sink);
  constexpr int kEntries = 70000;
  for (int i = 0; i < kEntries; ++i) {
    ASSERT_TRUE(writer.AddRecord(absl::StrCat("m/data/", i), {}).ok());
  }
  ASSERT_TRUE(writer.Finish().ok());
  EXPECT_EQ(testing::Get(sink.bytes(), sink.bytes().size() - 22 + 10, 2), 0xFFFFu);
  auto reader = ZipReader::Open(MemorySource(Buffer::FromVector(sink.TakeBytes())));
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(reader->entries().size(), static_cast<size_t>(kEntries));
  EXPECT_NE(reader->Find("m/data/69999"), nullptr);
}

TEST(ZipWriter, EmptyArchive) {
  MemorySink sink;
  ZipWriter writer(&sink);
  ASSERT_TRUE(writer.Finish().ok());
  EXPECT_EQ(sink.bytes().size(), 56u + 20u + 22u);
  auto reader = ZipReader::Open(MemorySource(Buffer::FromVector(sink.TakeBytes())));
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_TRUE(reader->entries().empty());
}

TEST(ZipWriter, MisuseIsReported) {
  MemorySink sink;
  ZipWriter writer(&sink);
  EXPECT_EQ(writer.AppendToRecord(AsBytes("x")).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(writer.EndRecord().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(writer.AddRecord("", AsBytes("x")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(writer.AddRecord(absl::string_view("a\0b", 3), AsBytes("x")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(writer.AddRecord(std::string(70000, 'n'), AsBytes("x")).code(),
            absl::StatusCode::kInvalidArgument);

  ASSERT_TRUE(writer.BeginRecord("a/x", 3).ok());
  EXPECT_EQ(writer.BeginRecord("a/y", 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(writer.Finish().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(writer.AppendToRecord(AsBytes("ab")).ok());
  const absl::Status fewer = writer.EndRecord();
  EXPECT_EQ(fewer.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(fewer.message(), HasSubstr("2 bytes appended, 3 announced"));
  const absl::Status more = writer.AppendToRecord(AsBytes("cd"));
  EXPECT_EQ(more.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(more.message(), HasSubstr("exceeds the announced size of 3"));
  ASSERT_TRUE(writer.AppendToRecord(AsBytes("c")).ok());
  ASSERT_TRUE(writer.EndRecord().ok());

  EXPECT_EQ(writer.AddRecord("a/x", AsBytes("again")).code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(writer.Finish().ok());
  EXPECT_EQ(writer.Finish().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(writer.AddRecord("a/z", {}).code(), absl::StatusCode::kFailedPrecondition);

  auto reader = ZipReader::Open(MemorySource(Buffer::FromVector(sink.TakeBytes())));
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_EQ(reader->entries().size(), 1u);
  EXPECT_EQ(reader->Read(reader->entries()[0])->AsStringView(), "abc");
}

TEST(ZipWriter, SinkFailurePoisonsTheWriter) {
  testing::FailingSink sink(/*ok_appends=*/1);  // the first local header goes through
  ZipWriter writer(&sink);
  ASSERT_TRUE(writer.BeginRecord("a/x", 1).ok());
  EXPECT_EQ(writer.AppendToRecord(AsBytes("x")).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(writer.EndRecord().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(writer.Finish().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace ucp::formats::zip
