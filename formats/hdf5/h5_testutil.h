// Test helpers for formats/hdf5: a per-test temp directory, typed tensor views over vectors,
// and small file-editing tools for crafting damaged files.
#pragma once

#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "formats/base/scratch_dir_testutil.h"
#include "formats/base/tensor_view.h"
#include "gtest/gtest.h"

namespace ucp::formats::hdf5::testing {

// A fresh directory under the test temp dir, removed at teardown. Teardown also checks that no
// HDF5 file, group, dataset or attribute identifier was left open, on success and error paths.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = ucp::testutil::ScratchDir::Make("").string(); }
  void TearDown() override {
    EXPECT_EQ(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0) << "HDF5 file objects left open";
    std::filesystem::remove_all(dir_);
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
};

template <typename T>
TensorView ViewOf(DType dtype, Shape shape, const std::vector<T>& values) {
  return TensorView{dtype, std::move(shape), {}, reinterpret_cast<const std::byte*>(values.data())};
}

inline std::vector<std::byte> BytesOf(const TensorView& view, size_t size) {
  return std::vector<std::byte>(view.data, view.data + size);
}

// Deterministic pseudo-random bytes (xorshift).
inline std::vector<std::byte> RandomBytes(size_t size, uint64_t seed) {
  std::vector<std::byte> bytes(size);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& b : bytes) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::byte>(x >> 24);
  }
  return bytes;
}

inline void WriteText(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

// Overwrites bytes of `path` at `offset`.
inline void Patch(const std::string& path, uint64_t offset, const std::vector<uint8_t>& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)),
            static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

// Inverts `count` bytes of `path` starting at `offset`.
inline void FlipBytes(const std::string& path, uint64_t offset, size_t count) {
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> bytes(count);
  ASSERT_EQ(::pread(fd, bytes.data(), count, static_cast<off_t>(offset)),
            static_cast<ssize_t>(count));
  for (auto& b : bytes) b = static_cast<uint8_t>(~b);
  ASSERT_EQ(::pwrite(fd, bytes.data(), count, static_cast<off_t>(offset)),
            static_cast<ssize_t>(count));
  ::close(fd);
}

}  // namespace ucp::formats::hdf5::testing
