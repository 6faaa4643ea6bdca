#include "runtime/data/token_data.h"

#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "formats/base/scratch_dir_testutil.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::runtime {
namespace {

using ::testing::HasSubstr;

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

template <typename T>
void Append(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // the hosts we build on are little-endian
  out.append(bytes, sizeof(T));
}

template <typename T>
std::string Pack(const std::vector<T>& values) {
  std::string out;
  for (T v : values) Append(out, v);
  return out;
}

std::vector<int64_t> ReadAll(const TokenData& data) {
  std::vector<int64_t> out(static_cast<size_t>(data.num_tokens()));
  const absl::Status status = data.Read(0, absl::MakeSpan(out));
  EXPECT_TRUE(status.ok()) << status;
  return out;
}

// The .idx of §10.2, field by field, so tests can break any one of them.
struct Idx {
  std::string magic = std::string("MMIDIDX\0\0", 9);
  uint64_t version = 1;
  uint8_t code = 6;
  std::vector<int32_t> lengths;
  std::vector<int64_t> offsets;  // filled from lengths when empty
  std::vector<int64_t> docs;     // {0, N} when empty
  std::optional<uint64_t> n;     // overrides lengths.size() in the header
  std::optional<uint64_t> d;     // overrides docs.size() in the header

  std::string Bytes(uint64_t item) const {
    std::vector<int64_t> offs = offsets;
    if (offs.empty()) {
      int64_t at = 0;
      for (int32_t length : lengths) {
        offs.push_back(at);
        at += length * static_cast<int64_t>(item);
      }
    }
    std::vector<int64_t> doc = docs;
    if (doc.empty()) doc = {0, static_cast<int64_t>(lengths.size())};
    std::string out = magic;
    Append(out, version);
    Append(out, code);
    Append(out, n.value_or(lengths.size()));
    Append(out, d.value_or(doc.size()));
    out += Pack(lengths) + Pack(offs) + Pack(doc);
    return out;
  }
};

Idx MakeIdx(uint8_t code, std::vector<int32_t> lengths, std::vector<int64_t> docs = {}) {
  Idx idx;
  idx.code = code;
  idx.lengths = std::move(lengths);
  idx.docs = std::move(docs);
  return idx;
}

TokenDataOptions Opts(std::string dtype, bool map = true) {
  TokenDataOptions options;
  options.dtype = std::move(dtype);
  options.map = map;
  return options;
}

TEST(TokenDataTest, FlatUint16) {
  const testutil::ScratchDir scratch;
  const std::string path = scratch.File("train.bin");
  WriteFile(path, Pack(std::vector<uint16_t>{0, 1, 65535, 50256, 7}));
  for (bool map : {true, false}) {
    absl::StatusOr<std::unique_ptr<TokenData>> data = OpenTokenData(path, Opts("", map));
    ASSERT_TRUE(data.ok()) << data.status();
    EXPECT_EQ((*data)->num_tokens(), 5);
    EXPECT_EQ((*data)->description(), "nanoGPT uint16 tokens " + path + " (5 tokens)");
    EXPECT_EQ(ReadAll(**data), (std::vector<int64_t>{0, 1, 65535, 50256, 7}));
    std::vector<int64_t> two(2);
    ASSERT_TRUE((*data)->Read(2, absl::MakeSpan(two)).ok());
    EXPECT_EQ(two, (std::vector<int64_t>{65535, 50256}));
  }
  // Explicit uint16 reads the same; uint32 halves the count.
  absl::StatusOr<std::unique_ptr<TokenData>> as16 = OpenTokenData(path, Opts("uint16"));
  ASSERT_TRUE(as16.ok());
  EXPECT_EQ((*as16)->num_tokens(), 5);
}

TEST(TokenDataTest, FlatUint32) {
  const testutil::ScratchDir scratch;
  const std::string path = scratch.File("train.bin");
  const std::vector<uint32_t> tokens = {100000, 0, 4294967295u, 151643};
  WriteFile(path, Pack(tokens));
  for (bool map : {true, false}) {
    absl::StatusOr<std::unique_ptr<TokenData>> data = OpenTokenData(path, Opts("uint32", map));
    ASSERT_TRUE(data.ok()) << data.status();
    EXPECT_THAT((*data)->description(), HasSubstr("nanoGPT uint32 tokens"));
    EXPECT_EQ(ReadAll(**data), (std::vector<int64_t>{100000, 0, 4294967295, 151643}));
  }
}

// Larger than the pread chunk, so the unmapped reader crosses chunk boundaries.
TEST(TokenDataTest, FlatReadsAcrossChunks) {
  const testutil::ScratchDir scratch;
  const std::string path = scratch.File("big.bin");
  std::vector<uint32_t> tokens(20000);
  std::iota(tokens.begin(), tokens.end(), 3u);
  WriteFile(path, Pack(tokens));
  for (bool map : {true, false}) {
    absl::StatusOr<std::unique_ptr<TokenData>> data = OpenTokenData(path, Opts("uint32", map));
    ASSERT_TRUE(data.ok()) << data.status();
    std::vector<int64_t> out(19000);
    ASSERT_TRUE((*data)->Read(500, absl::MakeSpan(out)).ok());
    for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], static_cast<int64_t>(503 + i));
  }
}

TEST(TokenDataTest, ReadIsBoundsChecked) {
  const testutil::ScratchDir scratch;
  const std::string path = scratch.File("train.bin");
  WriteFile(path, Pack(std::vector<uint16_t>{1, 2, 3, 4}));
  absl::StatusOr<std::unique_ptr<TokenData>> data = OpenTokenData(path);
  ASSERT_TRUE(data.ok());
  std::vector<int64_t> out(2);
  EXPECT_TRUE((*data)->Read(2, absl::MakeSpan(out)).ok());
  EXPECT_TRUE((*data)->Read(4, absl::Span<int64_t>()).ok());
  for (int64_t offset : {int64_t{3}, int64_t{5}, int64_t{-1}, INT64_MAX}) {
    const absl::Status status = (*data)->Read(offset, absl::MakeSpan(out));
    EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << offset;
    EXPECT_THAT(status.message(), HasSubstr(path)) << offset;
  }
}

TEST(TokenDataTest, FlatErrors) {
  const testutil::ScratchDir scratch;
  const std::string odd = scratch.File("odd.bin");
  WriteFile(odd, "abc");
  absl::Status status = OpenTokenData(odd).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("not a multiple of the uint16 size 2"));
  const std::string six = scratch.File("six.bin");
  WriteFile(six, "abcdef");
  EXPECT_TRUE(OpenTokenData(six).ok());
  EXPECT_EQ(OpenTokenData(six, Opts("uint32")).status().code(), absl::StatusCode::kDataLoss);
  status = OpenTokenData(six, Opts("int8")).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("uint16 or uint32"));

  const std::string empty = scratch.File("empty.bin");
  WriteFile(empty, "");
  status = OpenTokenData(empty).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("empty token file"));

  EXPECT_EQ(OpenTokenData(scratch.File("missing.bin")).status().code(),
            absl::StatusCode::kNotFound);
  status = OpenTokenData(scratch.path().string()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("not a regular file"));
  const std::string fifo = scratch.File("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  status = OpenTokenData(fifo).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("not a regular file"));
}

// One indexed dataset per dtype code: three sequences (one empty) in two documents.
struct DtypeCase {
  uint8_t code;
  const char* name;
  uint64_t item;
  std::vector<int64_t> tokens;  // 5 tokens: sequences {t0, t1}, {}, {t2, t3, t4}
};

std::string PackAs(uint8_t code, const std::vector<int64_t>& tokens) {
  std::string out;
  for (int64_t t : tokens) {
    switch (code) {
      case 1: Append(out, static_cast<uint8_t>(t)); break;
      case 2: Append(out, static_cast<int8_t>(t)); break;
      case 3: Append(out, static_cast<int16_t>(t)); break;
      case 4: Append(out, static_cast<int32_t>(t)); break;
      case 5: Append(out, static_cast<int64_t>(t)); break;
      case 6: Append(out, static_cast<uint16_t>(t)); break;
      case 7: Append(out, static_cast<uint32_t>(t)); break;
      case 8: Append(out, static_cast<uint64_t>(t)); break;
    }
  }
  return out;
}

class IndexedDtypeTest : public ::testing::TestWithParam<DtypeCase> {};

TEST_P(IndexedDtypeTest, StreamIsTheSequencesConcatenated) {
  const DtypeCase& c = GetParam();
  const testutil::ScratchDir scratch;
  const std::string prefix = scratch.File("corpus_text_document");
  const Idx idx = MakeIdx(c.code, {2, 0, 3}, {0, 2, 3});
  WriteFile(prefix + ".idx", idx.Bytes(c.item));
  WriteFile(prefix + ".bin", PackAs(c.code, c.tokens));
  for (const std::string& path : {prefix, prefix + ".bin", prefix + ".idx"}) {
    for (bool map : {true, false}) {
      absl::StatusOr<std::unique_ptr<TokenData>> data = OpenTokenData(path, Opts("", map));
      ASSERT_TRUE(data.ok()) << path << ": " << data.status();
      EXPECT_EQ((*data)->num_tokens(), 5);
      EXPECT_EQ((*data)->description(), "indexed dataset " + std::string(c.name) + " tokens " +
                                            prefix + " (3 sequences, 2 documents, 5 tokens)");
      EXPECT_EQ(ReadAll(**data), c.tokens);
      std::vector<int64_t> middle(3);
      ASSERT_TRUE((*data)->Read(1, absl::MakeSpan(middle)).ok());
      EXPECT_EQ(middle, std::vector<int64_t>(c.tokens.begin() + 1, c.tokens.begin() + 4));
    }
  }
  // The index names the type: the same name is accepted, another refused.
  EXPECT_TRUE(OpenTokenData(prefix, Opts(c.name)).ok());
  const absl::Status status =
      OpenTokenData(prefix, Opts(c.code == 6 ? "uint32" : "uint16")).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(std::string("the index says ") + c.name));
}

INSTANTIATE_TEST_SUITE_P(
    AllCodes, IndexedDtypeTest,
    ::testing::Values(DtypeCase{1, "uint8", 1, {0, 255, 7, 128, 1}},
                      DtypeCase{2, "int8", 1, {-128, 127, 0, -1, 5}},
                      DtypeCase{3, "int16", 2, {-32768, 32767, 0, 1, 2}},
                      DtypeCase{4, "int32", 4, {-5, 2147483647, 100000, 0, 3}},
                      DtypeCase{5, "int64", 8, {-1, INT64_MAX, 1LL << 40, 0, 9}},
                      DtypeCase{6, "uint16", 2, {65535, 0, 50256, 1, 2}},
                      DtypeCase{7, "uint32", 4, {4294967295LL, 0, 151643, 1, 2}},
                      DtypeCase{8, "uint64", 8, {INT64_MAX, 0, 1LL << 50, 1, 2}}),
    [](const ::testing::TestParamInfo<DtypeCase>& param) { return std::string(param.param.name); });

TEST(TokenDataTest, IndexedUint64OverInt64IsDataLoss) {
  const testutil::ScratchDir scratch;
  const std::string prefix = scratch.File("p");
  WriteFile(prefix + ".idx", MakeIdx(8, {2}).Bytes(8));
  WriteFile(prefix + ".bin", Pack(std::vector<uint64_t>{5, uint64_t{1} << 63}));
  absl::StatusOr<std::unique_ptr<TokenData>> data = OpenTokenData(prefix);
  ASSERT_TRUE(data.ok()) << data.status();
  std::vector<int64_t> out(2);
  const absl::Status status = (*data)->Read(0, absl::MakeSpan(out));
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("token 9223372036854775808 at offset 1"));
}

TEST(TokenDataTest, FlatBinWithoutIdxIsNanoGpt) {
  const testutil::ScratchDir scratch;
  WriteFile(scratch.File("train.bin"), Pack(std::vector<uint16_t>{1, 2}));
  absl::StatusOr<std::unique_ptr<TokenData>> data = OpenTokenData(scratch.File("train.bin"));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT((*data)->description(), HasSubstr("nanoGPT"));
  // A prefix with neither file, and an .idx whose .bin is missing: NotFound naming the file.
  EXPECT_EQ(OpenTokenData(scratch.File("nothing")).status().code(), absl::StatusCode::kNotFound);
  WriteFile(scratch.File("lonely.idx"), MakeIdx(6, {2}).Bytes(2));
  const absl::Status status = OpenTokenData(scratch.File("lonely")).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("lonely.bin"));
}

// Writes `idx_bytes` and a .bin of `bin_bytes` and returns OpenTokenData's status.
absl::Status OpenWith(const testutil::ScratchDir& scratch, const std::string& idx_bytes,
                      const std::string& bin_bytes) {
  const std::string prefix = scratch.File("p");
  WriteFile(prefix + ".idx", idx_bytes);
  WriteFile(prefix + ".bin", bin_bytes);
  return OpenTokenData(prefix).status();
}

void ExpectError(const absl::Status& status, absl::StatusCode code, const std::string& text) {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(text));
}

TEST(TokenDataTest, IndexValidation) {
  const testutil::ScratchDir scratch;
  const std::string idx_path = scratch.File("p.idx");
  const Idx good = MakeIdx(6, {2, 3});
  const std::string bin = Pack(std::vector<uint16_t>{1, 2, 3, 4, 5});
  ASSERT_TRUE(OpenWith(scratch, good.Bytes(2), bin).ok());

  Idx idx = good;
  idx.magic = std::string("MMIDIDY\0\0", 9);
  ExpectError(OpenWith(scratch, idx.Bytes(2), bin), absl::StatusCode::kDataLoss,
              idx_path + ": magic is not MMIDIDX");
  idx.magic = std::string("TNTIDX\0\0", 8);
  ExpectError(OpenWith(scratch, idx.Bytes(2), bin), absl::StatusCode::kInvalidArgument,
              idx_path + ": the old TNTIDX");
  idx = good;
  idx.version = 2;
  ExpectError(OpenWith(scratch, idx.Bytes(2), bin), absl::StatusCode::kDataLoss, "version 2");
  for (uint8_t code : {0, 9, 255}) {
    idx = good;
    idx.code = code;
    ExpectError(OpenWith(scratch, idx.Bytes(2), bin), absl::StatusCode::kDataLoss,
                "dtype code " + std::to_string(code));
  }
  // Counts whose byte sizes overflow, or just disagree with the file size.
  for (uint64_t n : {uint64_t{1} << 62, UINT64_MAX, uint64_t{3}, uint64_t{1}}) {
    idx = good;
    idx.n = n;
    ExpectError(OpenWith(scratch, idx.Bytes(2), bin), absl::StatusCode::kDataLoss,
                "number of sequences " + std::to_string(n));
  }
  for (uint64_t d : {uint64_t{1} << 61, UINT64_MAX - 1, uint64_t{3}}) {
    idx = good;
    idx.d = d;
    ExpectError(OpenWith(scratch, idx.Bytes(2), bin), absl::StatusCode::kDataLoss,
                "number of document-index entries " + std::to_string(d));
  }
  ExpectError(OpenWith(scratch, good.Bytes(2) + "x", bin), absl::StatusCode::kDataLoss,
              "need 12*N + 8*D bytes after the header, the file has 41");
  idx = good;
  idx.lengths = {2, -3};
  idx.offsets = {0, 4};
  ExpectError(OpenWith(scratch, idx.Bytes(2), bin), absl::StatusCode::kDataLoss,
              "sequence_lengths[1] = -3 is negative");
  idx = good;
  idx.offsets = {0, 2};  // tokens, not bytes: the scan is of length × item size
  ExpectError(OpenWith(scratch, idx.Bytes(2), bin), absl::StatusCode::kDataLoss,
              "sequence_offsets[1] = 2, the lengths before it give 4");
  idx.offsets = {1, 4};
  ExpectError(OpenWith(scratch, idx.Bytes(2), bin), absl::StatusCode::kDataLoss,
              "sequence_offsets[0] = 1");
  idx = good;
  idx.docs = {0, 1};
  ExpectError(OpenWith(scratch, idx.Bytes(2), bin), absl::StatusCode::kDataLoss,
              "document_index ends at 1, not at the number of sequences 2");
  idx.docs = {1, 2};
  ExpectError(OpenWith(scratch, idx.Bytes(2), bin), absl::StatusCode::kDataLoss,
              "document_index[0] = 1 (must be 0)");
  idx.docs = {0, 2, 1, 2};
  ExpectError(OpenWith(scratch, idx.Bytes(2), bin), absl::StatusCode::kDataLoss,
              "document_index[2] = 1 (must be in [2, 2])");
  idx.docs = {0, 3};
  ExpectError(OpenWith(scratch, idx.Bytes(2), bin), absl::StatusCode::kDataLoss,
              "document_index[1] = 3");
  idx = good;
  idx.d = 0;
  ExpectError(OpenWith(scratch, idx.Bytes(2).substr(0, 34 + 24), bin), absl::StatusCode::kDataLoss,
              "document index is empty");
  // The .bin must hold exactly what the index describes.
  for (const std::string& other : {bin + "zz", bin.substr(0, 8), std::string()}) {
    ExpectError(OpenWith(scratch, good.Bytes(2), other), absl::StatusCode::kDataLoss,
                std::to_string(other.size()) + " bytes, the index " + idx_path + " gives 10");
  }
  // Valid but empty: no tokens to train on.
  ExpectError(OpenWith(scratch, MakeIdx(6, {}, {0}).Bytes(2), ""),
              absl::StatusCode::kInvalidArgument, "holds no tokens");
}

// Every proper prefix of a valid .idx is refused as truncated (or as the old format), naming the
// file; none is read past its end.
TEST(TokenDataTest, TruncatedIndex) {
  const testutil::ScratchDir scratch;
  const std::string idx_path = scratch.File("p.idx");
  const std::string bytes = MakeIdx(6, {2, 3}, {0, 1, 2}).Bytes(2);
  const std::string bin = Pack(std::vector<uint16_t>{1, 2, 3, 4, 5});
  for (size_t size = 0; size < bytes.size(); ++size) {
    const absl::Status status = OpenWith(scratch, bytes.substr(0, size), bin);
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << size << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr(idx_path)) << size;
  }
  ExpectError(OpenWith(scratch, bytes.substr(0, 17), bin), absl::StatusCode::kDataLoss,
              "truncated in dtype code");
}

// Flips bits in each byte of a small valid .idx in turn: never a crash or an out-of-bounds read;
// either a clean error naming a file or data whose every token reads back.
TEST(TokenDataTest, IndexMutations) {
  const testutil::ScratchDir scratch;
  const std::string prefix = scratch.File("p");
  const std::string bytes = MakeIdx(4, {2, 0, 3}, {0, 2, 3}).Bytes(4);
  const std::string bin = PackAs(4, {10, 11, 12, 13, 14});
  int accepted = 0;
  int refused = 0;
  for (size_t at = 0; at < bytes.size(); ++at) {
    for (uint8_t flip : {0x01, 0x02, 0x03, 0x80, 0xff}) {
      std::string mutated = bytes;
      mutated[at] = static_cast<char>(mutated[at] ^ flip);
      const absl::StatusOr<std::unique_ptr<TokenData>> data = [&] {
        WriteFile(prefix + ".idx", mutated);
        WriteFile(prefix + ".bin", bin);
        return OpenTokenData(prefix);
      }();
      if (!data.ok()) {
        ++refused;
        EXPECT_TRUE(data.status().code() == absl::StatusCode::kDataLoss ||
                    data.status().code() == absl::StatusCode::kInvalidArgument)
            << at << ": " << data.status();
        EXPECT_THAT(data.status().message(), HasSubstr(prefix)) << at;
        continue;
      }
      ++accepted;
      EXPECT_EQ((*data)->num_tokens() * 4, static_cast<int64_t>(bin.size())) << at;
      EXPECT_EQ(ReadAll(**data), (std::vector<int64_t>{10, 11, 12, 13, 14})) << at;
    }
  }
  EXPECT_GT(refused, 0);
  // Some pass: the code 4 ^ 3 = 7 (uint32, same size) and document indexes that stay 0 ... N and
  // non-decreasing ({0, 3, 3}, {0, 0, 3}).
  EXPECT_GT(accepted, 0);
}

}  // namespace
}  // namespace ucp::runtime
