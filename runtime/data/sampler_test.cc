#include "runtime/data/sampler.h"

#include <cstring>
#include <fstream>
#include <numeric>
#include <set>
#include <vector>

#include "formats/base/scratch_dir_testutil.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::runtime {
namespace {

using ::testing::HasSubstr;

TokenDataOptions Options(bool map) {
  TokenDataOptions options;
  options.map = map;
  return options;
}

// Token i has value i, so a row's first token is its offset.
std::unique_ptr<TokenData> Iota(int64_t n) {
  std::vector<int64_t> tokens(static_cast<size_t>(n));
  std::iota(tokens.begin(), tokens.end(), 0);
  return TokenDataFromVector(std::move(tokens), "iota");
}

std::vector<int64_t> Batch(const TokenData& data, uint64_t seed, int64_t step, int64_t first_row,
                           int64_t rows, int64_t seq_len) {
  std::vector<int64_t> out(static_cast<size_t>(rows * (seq_len + 1)));
  const absl::Status status =
      ReadBatch(data, seed, step, first_row, rows, seq_len, absl::MakeSpan(out));
  EXPECT_TRUE(status.ok()) << status;
  return out;
}

// The formula is part of the resume contract (a run resumed by another build must read the same
// batches): values computed independently (Python) from splitmix64 and multiply-shift.
TEST(SamplerTest, GoldenOffsets) {
  EXPECT_EQ(SampleOffset(1234, 1, 0, 1000000, 1024), 596184);
  EXPECT_EQ(SampleOffset(1234, 1, 1, 1000000, 1024), 848351);
  EXPECT_EQ(SampleOffset(1234, 1, 2, 1000000, 1024), 536106);
  EXPECT_EQ(SampleOffset(1234, 1, 3, 1000000, 1024), 341227);
  EXPECT_EQ(SampleOffset(0, 7, 3, 50000, 256), 3713);
  EXPECT_EQ(SampleOffset(UINT64_MAX, 100000, 511, 9000000000, 8192), 8075030788);
}

TEST(SamplerTest, SameRowsAtEveryDataParallelSize) {
  const std::unique_ptr<TokenData> data = Iota(10007);
  constexpr int64_t kGlobal = 8;
  constexpr int64_t kSeq = 16;
  constexpr int64_t kWindow = kSeq + 1;
  for (int64_t step = 1; step <= 5; ++step) {
    const std::vector<int64_t> global = Batch(*data, 42, step, 0, kGlobal, kSeq);
    for (int64_t dp : {1, 2, 4}) {
      const int64_t micro = kGlobal / dp;
      std::vector<int64_t> joined;
      for (int64_t rank = 0; rank < dp; ++rank) {
        const std::vector<int64_t> part = Batch(*data, 42, step, rank * micro, micro, kSeq);
        joined.insert(joined.end(), part.begin(), part.end());
      }
      EXPECT_EQ(joined, global) << "dp " << dp << " step " << step;
    }
    // Each row is the contiguous window at SampleOffset.
    for (int64_t row = 0; row < kGlobal; ++row) {
      const int64_t start = SampleOffset(42, step, row, data->num_tokens(), kSeq);
      for (int64_t j = 0; j < kWindow; ++j) {
        ASSERT_EQ(global[static_cast<size_t>(row * kWindow + j)], start + j);
      }
    }
  }
}

TEST(SamplerTest, Deterministic) {
  const std::vector<int64_t> a = Batch(*Iota(5000), 7, 3, 0, 16, 32);
  const std::vector<int64_t> b = Batch(*Iota(5000), 7, 3, 0, 16, 32);
  EXPECT_EQ(a, b);
}

TEST(SamplerTest, StepsRowsAndSeedsDiffer) {
  const std::unique_ptr<TokenData> data = Iota(1 << 20);
  EXPECT_NE(Batch(*data, 1, 1, 0, 8, 64), Batch(*data, 1, 2, 0, 8, 64));
  EXPECT_NE(Batch(*data, 1, 1, 0, 8, 64), Batch(*data, 2, 1, 0, 8, 64));
  // (step, row) and (row, step) are different samples.
  EXPECT_NE(SampleOffset(1, 2, 3, 1 << 20, 64), SampleOffset(1, 3, 2, 1 << 20, 64));
  std::set<int64_t> starts;
  for (int64_t step = 1; step <= 50; ++step) {
    for (int64_t row = 0; row < 20; ++row) starts.insert(SampleOffset(9, step, row, 1 << 20, 64));
  }
  EXPECT_GT(starts.size(), 990u);  // 1000 draws from ~10^6 starts: few collisions
}

TEST(SamplerTest, WindowsInRangeAndEveryStartReachable) {
  for (int64_t n : {17, 18, 27, 1000}) {
    constexpr int64_t kSeq = 16;
    std::vector<int64_t> hits(static_cast<size_t>(n - kSeq), 0);
    for (int64_t step = 1; step <= 200; ++step) {
      for (int64_t row = 0; row < 50; ++row) {
        const int64_t start = SampleOffset(5, step, row, n, kSeq);
        ASSERT_GE(start, 0);
        ASSERT_LE(start + kSeq + 1, n);
        ++hits[static_cast<size_t>(start)];
      }
    }
    if (n <= 27) {
      for (int64_t h : hits) EXPECT_GT(h, 0) << n;
    }
  }
  // Roughly uniform: 10 starts, 100000 draws, each within 5 % of 10000.
  std::vector<int64_t> hits(10, 0);
  for (int64_t step = 1; step <= 1000; ++step) {
    for (int64_t row = 0; row < 100; ++row)
      ++hits[static_cast<size_t>(SampleOffset(3, step, row, 14, 4))];
  }
  for (int64_t h : hits) {
    EXPECT_GT(h, 9500);
    EXPECT_LT(h, 10500);
  }
}

TEST(SamplerTest, Errors) {
  const std::unique_ptr<TokenData> data = Iota(16);
  std::vector<int64_t> out(16);
  absl::Status status =
      ReadBatch(*data, 0, 1, 0, 1, 16, absl::MakeSpan(out = std::vector<int64_t>(17)));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("sequence length 16 + 1 tokens does not fit in 16 tokens"));
  EXPECT_THAT(status.message(), HasSubstr("iota"));
  EXPECT_EQ(CheckWindow(16, INT64_MAX).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckWindow(16, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckWindow(16, 15).ok());
  out.assign(16, 0);
  EXPECT_TRUE(ReadBatch(*data, 0, 1, 0, 1, 15, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out[0], 0);  // the only window
  EXPECT_EQ(ReadBatch(*data, 0, 0, 0, 1, 15, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadBatch(*data, 0, 1, -1, 1, 15, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadBatch(*data, 0, 1, INT64_MAX, 1, 15, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  status = ReadBatch(*data, 0, 1, 0, 2, 15, absl::MakeSpan(out));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("holds 16 tokens, 2 rows of 16 need 32"));
  EXPECT_TRUE(ReadBatch(*data, 0, 1, 0, 0, 15, absl::Span<int64_t>()).ok());
}

TEST(SamplerTest, CheckVocab) {
  const std::unique_ptr<TokenData> data = Iota(4);
  EXPECT_TRUE(CheckVocab(std::vector<int64_t>{0, 50303, 7}, 50304, *data).ok());
  absl::Status status = CheckVocab(std::vector<int64_t>{1, 2, 50304, 70000}, 50304, *data);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      status.message(),
      HasSubstr("token 50304 at position 2 of the batch is outside the vocabulary [0, 50304)"));
  EXPECT_THAT(status.message(), HasSubstr("iota"));
  status = CheckVocab(std::vector<int64_t>{3, -1}, 10, *data);
  EXPECT_THAT(status.message(), HasSubstr("token -1 at position 1"));
  EXPECT_EQ(CheckVocab({}, 0, *data).code(), absl::StatusCode::kInvalidArgument);
}

// The sampler over a real nanoGPT file, mapped and not: the same windows as the in-memory copy.
TEST(SamplerTest, OverAFile) {
  const testutil::ScratchDir scratch;
  const std::string path = scratch.File("train.bin");
  std::vector<uint16_t> tokens(3000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>((i * 7919) % 50257);
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(tokens.data()),
              static_cast<std::streamsize>(tokens.size() * 2));
  }
  const std::unique_ptr<TokenData> memory =
      TokenDataFromVector(std::vector<int64_t>(tokens.begin(), tokens.end()));
  for (bool map : {true, false}) {
    absl::StatusOr<std::unique_ptr<TokenData>> file = OpenTokenData(path, Options(map));
    ASSERT_TRUE(file.ok()) << file.status();
    const std::vector<int64_t> batch = Batch(**file, 11, 4, 0, 6, 128);
    EXPECT_EQ(batch, Batch(*memory, 11, 4, 0, 6, 128));
    EXPECT_TRUE(CheckVocab(batch, 50257, **file).ok());
    EXPECT_FALSE(CheckVocab(batch, 1000, **file).ok());
  }
}

}  // namespace
}  // namespace ucp::runtime
