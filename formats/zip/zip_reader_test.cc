#include "formats/zip/zip_reader.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "formats/base/crc32.h"
#include "formats/zip/zip_testutil.h"
#include "formats/zip/zip_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::formats::zip {
namespace {

using testing::AsBytes;
using testing::FindNth;
using testing::FromHex;
using testing::Get;
using ::testing::HasSubstr;
using testing::Put;

constexpr char kName[] = "hostile.pt";

std::shared_ptr<ByteSource> Source(const std::vector<std::byte>& bytes) {
  return MemorySource(Buffer::CopyOf(absl::MakeConstSpan(bytes)), kName);
}

absl::Status OpenStatus(const std::vector<std::byte>& bytes, ZipLimits limits = {}) {
  return ZipReader::Open(Source(bytes), limits).status();
}

// A small valid torch-style archive: three members of 5, 0 and 70 bytes.
std::vector<std::byte> SmallArchive() {
  MemorySink sink;
  ZipWriter writer(&sink);
  EXPECT_TRUE(writer.AddRecord("archive/data.pkl", AsBytes("hello")).ok());
  EXPECT_TRUE(writer.AddRecord("archive/data/0", {}).ok());
  EXPECT_TRUE(writer.AddRecord("archive/data/1", AsBytes(std::string(70, 'x'))).ok());
  EXPECT_TRUE(writer.Finish().ok());
  return sink.bytes();
}

// Offsets of the records in SmallArchive().
size_t Central(const std::vector<std::byte>& zip, int i) { return FindNth(zip, "PK\x01\x02", i); }
size_t Local(const std::vector<std::byte>& zip, int i) { return FindNth(zip, "PK\x03\x04", i); }
size_t Zip64End(const std::vector<std::byte>& zip) { return FindNth(zip, "PK\x06\x06", 0); }
size_t End(const std::vector<std::byte>& zip) { return zip.size() - 22; }

void ExpectDataLoss(const absl::Status& status, absl::string_view text) {
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr(kName));
  EXPECT_THAT(status.message(), HasSubstr(text));
}

TEST(ZipReaderFixtures, EveryFixtureOpensAndVerifies) {
  const std::vector<std::string> paths = testing::FixtureArchives();
  ASSERT_GT(paths.size(), 100u);
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    auto source = OpenFileSource(path);
    ASSERT_TRUE(source.ok()) << source.status();
    auto reader = ZipReader::Open(*source);
    ASSERT_TRUE(reader.ok()) << reader.status();
    ASSERT_GE(reader->entries().size(), 2u);  // data.pkl, version
    EXPECT_TRUE(reader->VerifyAll().ok());
    const std::string root =
        reader->entries()[0].name.substr(0, reader->entries()[0].name.find('/'));
    EXPECT_EQ(reader->entries()[0].name, root + "/data.pkl");
    const ZipEntry* version = reader->Find(root + "/version");
    ASSERT_NE(version, nullptr);
    auto bytes = reader->Read(*version);
    ASSERT_TRUE(bytes.ok());
    EXPECT_EQ(bytes->AsStringView(), "3\n");
    for (const ZipEntry& e : reader->entries()) {
      EXPECT_EQ(reader->Find(e.name), &e);
      EXPECT_EQ(e.data_offset % kPayloadAlignment, 0u) << e.name;
    }
  }
}

// Values from python's zipfile (ZipInfo.filename, header_offset, file_size, CRC).
TEST(ZipReaderFixtures, ModelStatesMatchPythonZipfile) {
  auto source = OpenFileSource(
      testing::FixturePath("s2_fp32_dp2/checkpoint/global_step5/mp_rank_00_model_states.pt"));
  ASSERT_TRUE(source.ok());
  auto reader = ZipReader::Open(*source);
  ASSERT_TRUE(reader.ok()) << reader.status();
  struct Expected {
    const char* name;
    uint64_t header_offset, data_offset, size;
    uint32_t crc;
  };
  const Expected expected[] = {
      {"mp_rank_00_model_states/data.pkl", 0, 128, 3737, 0x5b3a2572},
      {"mp_rank_00_model_states/data/0", 3881, 3968, 768, 0x8c4201f2},
      {"mp_rank_00_model_states/data/1", 4752, 4864, 1472, 0xb42eb7b2},
      {"mp_rank_00_model_states/data/2", 6352, 6464, 27360, 0x0b3a77a6},
      {"mp_rank_00_model_states/version", 33840, 33920, 2, 0x55679ed1},
  };
  ASSERT_EQ(reader->entries().size(), std::size(expected));
  for (size_t i = 0; i < std::size(expected); ++i) {
    const ZipEntry& e = reader->entries()[i];
    EXPECT_EQ(e.name, expected[i].name);
    EXPECT_EQ(e.local_header_offset, expected[i].header_offset);
    EXPECT_EQ(e.data_offset, expected[i].data_offset);
    EXPECT_EQ(e.size, expected[i].size);
    EXPECT_EQ(e.crc32, expected[i].crc);
  }
}

TEST(ZipReaderFixtures, Bf16OptimizerShardMatchesPythonZipfile) {
  auto source = OpenFileSource(testing::FixturePath(
      "s1_bf16opt_dp4/checkpoint/global_step5/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"));
  ASSERT_TRUE(source.ok());
  auto reader = ZipReader::Open(*source);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<std::string> names;
  for (const ZipEntry& e : reader->entries()) names.push_back(e.name);
  EXPECT_EQ(names.front(), "bf16_zero_pp_rank_0_mp_rank_00_optim_states/data.pkl");
  EXPECT_EQ(names.back(), "bf16_zero_pp_rank_0_mp_rank_00_optim_states/version");
}

TEST(ZipReader, ReadIsZeroCopyWhenMappedAndCopiesOtherwise) {
  const std::string path =
      testing::FixturePath("s2_fp32_dp2/checkpoint/global_step5/mp_rank_00_model_states.pt");
  auto mapped = OpenFileSource(path, /*map=*/true);
  auto unmapped = OpenFileSource(path, /*map=*/false);
  ASSERT_TRUE(mapped.ok() && unmapped.ok());
  auto a = ZipReader::Open(*mapped);
  auto b = ZipReader::Open(*unmapped);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->entries().size(), b->entries().size());
  const Buffer whole = *(*mapped)->Map();
  for (size_t i = 0; i < a->entries().size(); ++i) {
    auto x = a->Read(a->entries()[i]);
    auto y = b->Read(b->entries()[i]);
    ASSERT_TRUE(x.ok() && y.ok());
    EXPECT_EQ(x->data(), whole.data() + a->entries()[i].data_offset);
    EXPECT_EQ(x->AsStringView(), y->AsStringView());
  }
  EXPECT_TRUE(b->VerifyAll().ok());
}

// Unmapped sources are checksummed in bounded chunks; a flip in a later chunk is still found.
TEST(ZipReader, VerifyCrcOnUnmappedSourceSpansChunks) {
  std::vector<std::byte> payload(9 << 20);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::byte>(i * 131 >> 7);
  MemorySink sink;
  ZipWriter writer(&sink);
  ASSERT_TRUE(writer.AddRecord("archive/data/0", payload).ok());
  ASSERT_TRUE(writer.Finish().ok());
  for (bool flip : {false, true}) {
    testing::SparseImage image{sink.bytes().size(), {{0, sink.bytes()}}};
    if (flip) image.regions[0].second[64 + (8 << 20) + 5] ^= std::byte{0x10};
    auto reader = ZipReader::Open(std::make_shared<testing::SparseSource>(image, kName));
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_EQ(reader->VerifyAll().ok(), !flip);
  }
}

TEST(ZipReader, OpensPythonZipfileStoredArchive) {
  // zipfile.ZipFile(compression=ZIP_STORED): no data descriptors, no extra fields, real dates.
  const std::vector<std::byte> zip = FromHex(
      "504b030414000000000083182250e3513d8d170000001700000010000000617263686976652f646174612e706b"
      "6c68656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f504b030414000000000083182250d19e6755020000"
      "00020000000f000000617263686976652f76657273696f6e330a504b0102140314000000000083182250e3513d"
      "8d1700000017000000100000000000000000000000800100000000617263686976652f646174612e706b6c504b"
      "0102140314000000000083182250d19e675502000000020000000f0000000000000000000000800145000000617"
      "263686976652f76657273696f6e504b050600000000020002007b000000740000000000");
  auto reader = ZipReader::Open(Source(zip));
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_TRUE(reader->VerifyAll().ok());
  auto pkl = reader->Read(*reader->Find("archive/data.pkl"));
  ASSERT_TRUE(pkl.ok());
  EXPECT_EQ(pkl->AsStringView(), "hello hello hello hello");
}

TEST(ZipReaderHostile, DeflatedMemberIsUnimplemented) {
  // zipfile.ZipFile(compression=ZIP_DEFLATED) of the same two members.
  const std::vector<std::byte> zip = FromHex(
      "504b030414000000080083182250e3513d8d0a0000001700000010000000617263686976652f646174612e706b"
      "6ccb48cdc9c957c8402701504b030414000000080083182250d19e675504000000020000000f00000061726368"
      "6976652f76657273696f6e33e60200504b0102140314000000080083182250e3513d8d0a000000170000001000"
      "00000000000000000000800100000000617263686976652f646174612e706b6c504b0102140314000000080083"
      "182250d19e675504000000020000000f0000000000000000000000800138000000617263686976652f76657273"
      "696f6e504b050600000000020002007b000000690000000000");
  const absl::Status status = OpenStatus(zip);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("compressed member 'archive/data.pkl' (method 8) not supported"));
}

TEST(ZipReaderHostile, EncryptedMemberIsUnimplemented) {
  std::vector<std::byte> zip = SmallArchive();
  Put(zip, Central(zip, 1) + 8, Get(zip, Central(zip, 1) + 8, 2) | 1, 2);
  const absl::Status status = OpenStatus(zip);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << status;
  EXPECT_THAT(status.message(), HasSubstr("encrypted member 'archive/data/0'"));
}

TEST(ZipReaderHostile, TruncatedAtEveryOffsetFailsCleanly) {
  const std::vector<std::byte> zip = SmallArchive();
  ASSERT_TRUE(OpenStatus(zip).ok());
  for (size_t n = 0; n < zip.size(); ++n) {
    std::vector<std::byte> cut(zip.begin(), zip.begin() + n);
    EXPECT_EQ(OpenStatus(cut).code(), absl::StatusCode::kDataLoss) << "truncated to " << n;
  }
}

TEST(ZipReaderHostile, TruncatedFixtureFailsCleanly) {
  const std::vector<std::byte> zip = testing::ReadFileBytes(
      testing::FixturePath("s2_fp32_dp2/checkpoint/global_step5/mp_rank_00_model_states.pt"));
  ASSERT_TRUE(OpenStatus(zip).ok());
  // Every 97th offset, then every offset of the last 700 bytes (directory and end records).
  for (size_t n = 0; n < zip.size(); n += (n + 700 >= zip.size() ? 1 : 97)) {
    std::vector<std::byte> cut(zip.begin(), zip.begin() + n);
    EXPECT_FALSE(OpenStatus(cut).ok()) << "truncated to " << n;
  }
}

// Every single-byte corruption either fails or yields entries that lie inside the file.
TEST(ZipReaderHostile, EveryByteFlippedNeverEscapes) {
  const std::vector<std::byte> zip = SmallArchive();
  for (size_t i = 0; i < zip.size(); ++i) {
    for (std::byte mask : {std::byte{0x01}, std::byte{0x80}, std::byte{0xFF}}) {
      std::vector<std::byte> bad = zip;
      bad[i] ^= mask;
      auto reader = ZipReader::Open(Source(bad));
      if (!reader.ok()) continue;
      for (const ZipEntry& e : reader->entries()) {
        EXPECT_LE(e.data_offset + e.size, bad.size()) << "byte " << i;
        EXPECT_TRUE(reader->Read(e).ok());
        (void)reader->VerifyCrc(e);
      }
    }
  }
}

TEST(ZipReaderHostile, NotAZip) {
  ExpectDataLoss(OpenStatus({}), "end of central directory record not found");
  ExpectDataLoss(OpenStatus(std::vector<std::byte>(1000, std::byte{'P'})),
                 "end of central directory record not found");
}

TEST(ZipReaderHostile, ClassicEntryCountsDisagree) {
  std::vector<std::byte> zip = SmallArchive();
  Put(zip, End(zip) + 10, 2, 2);  // total entries 3 -> 2
  ExpectDataLoss(OpenStatus(zip), "entry counts disagree");
}

TEST(ZipReaderHostile, Zip64EntryCountsDisagree) {
  std::vector<std::byte> zip = SmallArchive();
  Put(zip, Zip64End(zip) + 24, 4, 8);  // entries on this disk 3 -> 4
  ExpectDataLoss(OpenStatus(zip), "entry counts disagree");
}

TEST(ZipReaderHostile, FewerEntriesThanTheDirectoryHolds) {
  std::vector<std::byte> zip = SmallArchive();
  for (size_t at : {End(zip) + 8, End(zip) + 10}) Put(zip, at, 2, 2);
  for (size_t at : {Zip64End(zip) + 24, Zip64End(zip) + 32}) Put(zip, at, 2, 8);
  ExpectDataLoss(OpenStatus(zip), "bytes after the 2 entries");
}

TEST(ZipReaderHostile, CentralDirectoryPastEof) {
  std::vector<std::byte> zip = SmallArchive();
  Put(zip, End(zip) + 16, zip.size() + 100, 4);
  Put(zip, Zip64End(zip) + 48, zip.size() + 100, 8);
  ExpectDataLoss(OpenStatus(zip), "past the end of the file");
}

TEST(ZipReaderHostile, CentralDirectoryOffsetHuge) {
  std::vector<std::byte> zip = SmallArchive();
  Put(zip, End(zip) + 16, 0xFFFFFFFF, 4);
  Put(zip, Zip64End(zip) + 48, ~uint64_t{0} - 5, 8);
  ExpectDataLoss(OpenStatus(zip), "past the end of the file");
}

TEST(ZipReaderHostile, CentralDirectorySizeDisagreesWithEndRecords) {
  std::vector<std::byte> zip = SmallArchive();
  const uint64_t size = Get(zip, Zip64End(zip) + 40, 8) - 10;
  Put(zip, End(zip) + 12, size, 4);
  Put(zip, Zip64End(zip) + 40, size, 8);
  ExpectDataLoss(OpenStatus(zip), "does not end where the end records begin");
}

TEST(ZipReaderHostile, LimitsAreEnforcedBeforeAllocation) {
  const std::vector<std::byte> zip = SmallArchive();
  ExpectDataLoss(OpenStatus(zip, ZipLimits{.max_entries = 2}), "more than the limit of 2");
  ExpectDataLoss(OpenStatus(zip, ZipLimits{.max_central_directory_bytes = 100}), "limit of 100");
  ExpectDataLoss(OpenStatus(zip, ZipLimits{.max_name_bytes = 10}), "limit 10");
  // A count far beyond what the directory's bytes can hold is rejected before reserving.
  std::vector<std::byte> bad = zip;
  for (size_t at : {Zip64End(bad) + 24, Zip64End(bad) + 32}) Put(bad, at, 1000000, 8);
  for (size_t at : {End(bad) + 8, End(bad) + 10}) Put(bad, at, 0xFFFF, 2);
  ExpectDataLoss(OpenStatus(bad), "cannot hold 1000000 entries");
}

TEST(ZipReaderHostile, Zip64LocatorPointsNowhere) {
  std::vector<std::byte> zip = SmallArchive();
  Put(zip, End(zip) - 20 + 8, zip.size() + 5, 8);
  ExpectDataLoss(OpenStatus(zip), "ZIP64 end of central directory record offset");
  zip = SmallArchive();
  Put(zip, Zip64End(zip), 0x12345678, 4);
  ExpectDataLoss(OpenStatus(zip), "no valid ZIP64 end of central directory record");
}

TEST(ZipReaderHostile, OverlappingRecords) {
  std::vector<std::byte> zip = SmallArchive();
  // Grow member 0 so that its payload covers member 1's local header.
  for (size_t at : {Central(zip, 0) + 20, Central(zip, 0) + 24}) Put(zip, at, 200, 4);
  ExpectDataLoss(OpenStatus(zip), "overlap");
  // Two central entries sharing one local header.
  zip = SmallArchive();
  Put(zip, Central(zip, 2) + 42, Get(zip, Central(zip, 1) + 42, 4), 4);
  ExpectDataLoss(OpenStatus(zip), "local header name differs");
}

TEST(ZipReaderHostile, DuplicateName) {
  std::vector<std::byte> zip = SmallArchive();  // "archive/data/0" and "archive/data/1"
  Put(zip, Central(zip, 2) + 46 + 13, '0', 1);
  Put(zip, Local(zip, 2) + 30 + 13, '0', 1);
  ExpectDataLoss(OpenStatus(zip), "member 'archive/data/0': duplicate member name");
}

TEST(ZipReaderHostile, NameWithNul) {
  std::vector<std::byte> zip = SmallArchive();
  Put(zip, Central(zip, 1) + 46 + 7, 0, 1);
  Put(zip, Local(zip, 1) + 30 + 7, 0, 1);
  ExpectDataLoss(OpenStatus(zip), "name contains NUL");
}

TEST(ZipReaderHostile, LocalHeaderProblems) {
  std::vector<std::byte> zip = SmallArchive();
  Put(zip, Local(zip, 1), 0x04034b51, 4);
  ExpectDataLoss(OpenStatus(zip), "member 'archive/data/0': no local header signature");
  zip = SmallArchive();
  Put(zip, Local(zip, 1) + 30, 'A', 1);
  ExpectDataLoss(OpenStatus(zip), "local header name differs");
  zip = SmallArchive();
  Put(zip, Local(zip, 1) + 8, 8, 2);
  ExpectDataLoss(OpenStatus(zip), "local header method or flags differ");
  zip = SmallArchive();
  Put(zip, Central(zip, 1) + 42, Central(zip, 0) - 10, 4);
  ExpectDataLoss(OpenStatus(zip), "is not before the central directory");
}

TEST(ZipReaderHostile, PayloadRunsIntoCentralDirectory) {
  std::vector<std::byte> zip = SmallArchive();
  for (size_t at : {Central(zip, 2) + 20, Central(zip, 2) + 24}) Put(zip, at, 100, 4);
  ExpectDataLoss(OpenStatus(zip), "runs into the central directory");
  for (size_t at : {Central(zip, 2) + 20, Central(zip, 2) + 24}) Put(zip, at, 100000, 4);
  ExpectDataLoss(OpenStatus(zip), "past the end of the file");
}

TEST(ZipReaderHostile, StoredSizesDisagree) {
  std::vector<std::byte> zip = SmallArchive();
  Put(zip, Central(zip, 0) + 20, 4, 4);
  ExpectDataLoss(OpenStatus(zip), "compressed size 4 but size 5");
}

TEST(ZipReaderHostile, SizeSentinelWithoutZip64Field) {
  std::vector<std::byte> zip = SmallArchive();
  Put(zip, Central(zip, 0) + 24, 0xFFFFFFFF, 4);  // size "in the ZIP64 field", but there is none
  ExpectDataLoss(OpenStatus(zip), "compressed size 5 but size 4294967295");
}

// torch's 8 GiB ZIP64 archive with the central ZIP64 field of 'big2/data/1' (size, compressed
// size and offset: 24 bytes) damaged.
TEST(ZipReaderHostile, Zip64FieldTooShortOrOverrunning) {
  for (const auto& [length, text] :
       {std::pair<uint64_t, const char*>{8, "ZIP64 extra field is too short"},
        {200, "extra field overruns its header"}}) {
    testing::SparseImage image = testing::Torch113Zip64Image();
    std::vector<std::byte>& tail = image.regions.back().second;
    const size_t name = FindNth(tail, "big2/data/1", 0);  // its central entry: no local header here
    ASSERT_NE(name, std::string::npos);
    ASSERT_EQ(Get(tail, name + 11, 2), 1u);
    ASSERT_EQ(Get(tail, name + 13, 2), 24u);
    Put(tail, name + 13, length, 2);
    auto source = std::make_shared<testing::SparseSource>(std::move(image), kName);
    ExpectDataLoss(ZipReader::Open(source).status(), text);
  }
}

TEST(ZipReaderHostile, CrcMismatchNamesTheMember) {
  std::vector<std::byte> zip = SmallArchive();
  auto reader = ZipReader::Open(Source(zip));
  ASSERT_TRUE(reader.ok());
  zip[reader->Find("archive/data/1")->data_offset + 3] ^= std::byte{1};
  reader = ZipReader::Open(Source(zip));
  ASSERT_TRUE(reader.ok()) << reader.status();  // Open does not read payloads
  EXPECT_TRUE(reader->VerifyCrc(*reader->Find("archive/data.pkl")).ok());
  ExpectDataLoss(reader->VerifyCrc(*reader->Find("archive/data/1")),
                 "member 'archive/data/1': CRC mismatch");
  ExpectDataLoss(reader->VerifyAll(), "CRC mismatch");
}

TEST(ZipReaderHostile, MultiDiskIsUnimplemented) {
  std::vector<std::byte> zip = SmallArchive();
  Put(zip, Zip64End(zip) + 16, 1, 4);
  EXPECT_EQ(OpenStatus(zip).code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace ucp::formats::zip
