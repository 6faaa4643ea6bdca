// The zstd filter callback called directly, as HDF5 would, with good and hostile chunks.
#include "formats/hdf5/zstd_filter.h"

#include <zstd.h>

#include <cstring>
#include <vector>

#include "formats/hdf5/h5_internal.h"
#include "formats/hdf5/h5_testutil.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::internal_hdf5 {
namespace {

using ::testing::HasSubstr;

// A chunk buffer owned the way HDF5 owns it (H5allocate_memory), freed at scope exit.
struct Chunk {
  void* data = nullptr;
  size_t size = 0;    // allocated
  size_t nbytes = 0;  // valid

  explicit Chunk(const std::vector<std::byte>& bytes) : size(bytes.size()), nbytes(bytes.size()) {
    data = H5allocate_memory(size == 0 ? 1 : size, false);
    std::memcpy(data, bytes.data(), bytes.size());
  }
  ~Chunk() { H5free_memory(data); }
  size_t Run(unsigned flags, std::vector<unsigned> cd) {
    size_t result = ZstdFilter(flags, cd.size(), cd.data(), nbytes, &size, &data);
    if (result != 0) nbytes = result;
    return result;
  }
  std::vector<std::byte> Bytes() const {
    const auto* p = static_cast<const std::byte*>(data);
    return std::vector<std::byte>(p, p + nbytes);
  }
};

class Hdf5ZstdFilterTest : public ::testing::Test {
 protected:
  Hdf5Scope scope_;  // silences HDF5's error printing
  const std::vector<std::byte> plain_ = [] {
    std::vector<std::byte> bytes(10000);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i % 37);
    return bytes;
  }();

  std::vector<std::byte> Compressed(int level = 3) {
    Chunk chunk(plain_);
    EXPECT_GT(chunk.Run(0, {static_cast<unsigned>(level)}), 0u);
    return chunk.Bytes();
  }
  // The message the filter left on the HDF5 error stack.
  std::string LastError() {
    return std::string(ErrorFromStack(absl::StatusCode::kDataLoss, "x").message());
  }
};

TEST_F(Hdf5ZstdFilterTest, RoundTripWithRecordedChunkSize) {
  for (int level : {-5, 0, 1, 3, 19}) {
    std::vector<std::byte> frame = Compressed(level);
    EXPECT_LT(frame.size(), plain_.size() / 10);
    EXPECT_EQ(ZSTD_getFrameContentSize(frame.data(), frame.size()), plain_.size())
        << "size recorded";
    Chunk chunk(frame);
    ASSERT_EQ(chunk.Run(H5Z_FLAG_REVERSE, {3, static_cast<unsigned>(plain_.size())}),
              plain_.size());
    EXPECT_EQ(chunk.Bytes(), plain_);
  }
}

TEST_F(Hdf5ZstdFilterTest, ExpectedSizeFromThisThreadOverridesCdValues) {
  std::vector<std::byte> frame = Compressed();
  {
    Chunk chunk(frame);
    EXPECT_EQ(chunk.Run(H5Z_FLAG_REVERSE, {3}), 0u) << "no size known";
    EXPECT_THAT(LastError(), HasSubstr("chunk size is unknown"));
  }
  {
    ScopedExpectedChunkBytes expect(plain_.size());
    Chunk chunk(frame);
    EXPECT_EQ(chunk.Run(H5Z_FLAG_REVERSE, {3, 12345}), plain_.size());
    EXPECT_EQ(chunk.Bytes(), plain_);
  }
  Chunk chunk(frame);
  EXPECT_EQ(chunk.Run(H5Z_FLAG_REVERSE, {3, 12345}), 0u) << "override ended with its scope";
  EXPECT_THAT(LastError(), HasSubstr("declares 10000 bytes but the chunk holds 12345"));
}

TEST_F(Hdf5ZstdFilterTest, RejectsHostileChunks) {
  const std::vector<unsigned> cd = {3, static_cast<unsigned>(plain_.size())};
  std::vector<std::byte> frame = Compressed();

  Chunk garbage(ucp::formats::hdf5::testing::RandomBytes(500, 9));
  EXPECT_EQ(garbage.Run(H5Z_FLAG_REVERSE, cd), 0u);
  EXPECT_THAT(LastError(), HasSubstr("not a zstd frame"));

  std::vector<std::byte> trailing = frame;
  trailing.push_back(std::byte{0});
  Chunk with_trailing(trailing);
  EXPECT_EQ(with_trailing.Run(H5Z_FLAG_REVERSE, cd), 0u);
  EXPECT_THAT(LastError(), HasSubstr("not exactly one zstd frame"));

  std::vector<std::byte> cut(frame.begin(), frame.end() - 5);
  Chunk truncated(cut);
  EXPECT_EQ(truncated.Run(H5Z_FLAG_REVERSE, cd), 0u);

  std::vector<std::byte> flipped = frame;
  flipped[flipped.size() - 2] ^= std::byte{0xFF};  // inside the content checksum
  Chunk bad_checksum(flipped);
  EXPECT_EQ(bad_checksum.Run(H5Z_FLAG_REVERSE, cd), 0u);
  EXPECT_THAT(LastError(), HasSubstr("corrupt zstd chunk"));

  // A frame without a content size (streaming compression with no pledged size).
  std::vector<std::byte> unsized(ZSTD_compressBound(plain_.size()));
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
  size_t n = ZSTD_compress2(cctx, unsized.data(), unsized.size(), plain_.data(), plain_.size());
  ZSTD_freeCCtx(cctx);
  ASSERT_FALSE(ZSTD_isError(n));
  unsized.resize(n);
  Chunk no_size(unsized);
  EXPECT_EQ(no_size.Run(H5Z_FLAG_REVERSE, cd), 0u);
  EXPECT_THAT(LastError(), HasSubstr("does not record its size"));
}

TEST_F(Hdf5ZstdFilterTest, RegistersOnceAndIsAvailable) {
  EXPECT_TRUE(RegisterZstdFilter());
  EXPECT_TRUE(RegisterZstdFilter());
  EXPECT_GT(H5Zfilter_avail(kZstdFilterId), 0);
  EXPECT_EQ(ZstdFilterClass()->id, kZstdFilterId);
}

}  // namespace
}  // namespace ucp::internal_hdf5
