// Test helpers for formats/zip: fixture discovery, little-endian patching of archive bytes, and
// sparse test doubles (a ByteSink that can drop payload bytes and a ByteSource that reads zeros
// between stored regions) so that archives past 4 GiB can be written and read in memory.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "formats/base/byte_sink.h"
#include "formats/base/byte_source.h"
#include "formats/base/checked_math.h"

namespace ucp::formats::zip::testing {

// The repository root: $UCP_SOURCE_DIR (set by ctest), else the path CMake compiled in.
inline std::string SourceDir() {
  if (const char* dir = std::getenv("UCP_SOURCE_DIR"); dir != nullptr && *dir != '\0') return dir;
  return UCP_ZIP_TEST_SOURCE_DIR;
}

// Every torch.save file under fixtures/deepspeed, sorted.
inline std::vector<std::string> FixtureArchives() {
  std::vector<std::string> paths;
  const std::filesystem::path root = std::filesystem::path(SourceDir()) / "fixtures" / "deepspeed";
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    const std::string ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".pt" || ext == ".bin")) paths.push_back(e.path().string());
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

inline std::string FixturePath(absl::string_view relative) {
  return (std::filesystem::path(SourceDir()) / "fixtures" / "deepspeed" / std::string(relative))
      .string();
}

inline std::vector<std::byte> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  if (!chars.empty()) std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

inline absl::Span<const std::byte> AsBytes(absl::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

inline std::vector<std::byte> FromHex(absl::string_view hex) {
  std::vector<std::byte> out;
  auto nibble = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::byte>(nibble(hex[i]) * 16 + nibble(hex[i + 1])));
  }
  return out;
}

inline void Put(std::vector<std::byte>& bytes, size_t offset, uint64_t value, int width) {
  for (int i = 0; i < width; ++i) bytes.at(offset + i) = static_cast<std::byte>(value >> (8 * i));
}
inline uint64_t Get(const std::vector<std::byte>& bytes, size_t offset, int width) {
  uint64_t v = 0;
  for (int i = 0; i < width; ++i) v |= std::to_integer<uint64_t>(bytes.at(offset + i)) << (8 * i);
  return v;
}

// Offset of the `n`-th (0-based) occurrence of `pattern` in `bytes`, or npos.
inline size_t FindNth(const std::vector<std::byte>& bytes, absl::string_view pattern, int n) {
  absl::string_view hay(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  size_t pos = hay.find(pattern);
  for (; n > 0 && pos != absl::string_view::npos; --n) pos = hay.find(pattern, pos + 1);
  return pos;
}

// Stored regions of a sparse byte image; bytes outside every region read as zero.
struct SparseImage {
  uint64_t size = 0;
  std::vector<std::pair<uint64_t, std::vector<std::byte>>> regions;  // ascending, disjoint

  void CopyTo(uint64_t offset, absl::Span<std::byte> out) const {
    std::fill(out.begin(), out.end(), std::byte{0});
    for (const auto& [start, bytes] : regions) {
      const uint64_t lo = std::max(start, offset);
      const uint64_t hi = std::min(start + bytes.size(), offset + out.size());
      if (lo < hi) std::memcpy(out.data() + (lo - offset), bytes.data() + (lo - start), hi - lo);
    }
  }
};

// torch 1.13's bytes for an 8 GiB archive of mostly zeros (testdata/make_zip64_golden.py).
struct GoldenRegion {
  uint64_t offset;
  const char* hex;
};
#include "formats/zip/testdata/torch113_zip64_golden.inc"

inline SparseImage Torch113Zip64Image() {
  SparseImage image{kGoldenFileSize, {}};
  for (const GoldenRegion& r : kGoldenRegions) image.regions.emplace_back(r.offset, FromHex(r.hex));
  return image;
}

// A ByteSource over a SparseImage; never mapped, so readers take their chunked paths.
class SparseSource final : public ByteSource {
 public:
  SparseSource(SparseImage image, std::string name)
      : image_(std::move(image)), name_(std::move(name)) {}
  uint64_t Size() const override { return image_.size; }
  const std::string& name() const override { return name_; }
  absl::Status ReadAt(uint64_t offset, absl::Span<std::byte> out) const override {
    if (!RangeInside(offset, out.size(), image_.size)) return absl::OutOfRangeError("sparse read");
    image_.CopyTo(offset, out);
    return absl::OkStatus();
  }

 private:
  SparseImage image_;
  std::string name_;
};

// A ByteSink that keeps appended bytes except while discarding (then it only counts them, and
// they read back as zeros), so a test can write a multi-GiB archive of zero payloads.
class SparseSink final : public ByteSink {
 public:
  absl::Status Append(absl::Span<const std::byte> bytes) override {
    if (!discard_ && !bytes.empty()) {
      auto& regions = image_.regions;
      if (regions.empty() || regions.back().first + regions.back().second.size() != image_.size) {
        regions.emplace_back(image_.size, std::vector<std::byte>());
      }
      regions.back().second.insert(regions.back().second.end(), bytes.begin(), bytes.end());
    }
    image_.size += bytes.size();
    return absl::OkStatus();
  }
  absl::Status WriteAt(uint64_t, absl::Span<const std::byte>) override {
    return absl::UnimplementedError("SparseSink::WriteAt");
  }
  uint64_t Size() const override { return image_.size; }
  absl::Status Commit() override { return absl::OkStatus(); }
  const std::string& name() const override { return name_; }
  using ByteSink::Append;

  void set_discard(bool discard) { discard_ = discard; }
  const SparseImage& image() const { return image_; }

 private:
  SparseImage image_;
  bool discard_ = false;
  std::string name_ = "<sparse>";
};

// A ByteSink whose appends fail after `ok_appends` successful ones.
class FailingSink final : public ByteSink {
 public:
  explicit FailingSink(int ok_appends) : ok_appends_(ok_appends) {}
  absl::Status Append(absl::Span<const std::byte> bytes) override {
    if (ok_appends_-- <= 0) return absl::UnavailableError("disk on fire");
    size_ += bytes.size();
    return absl::OkStatus();
  }
  absl::Status WriteAt(uint64_t, absl::Span<const std::byte>) override {
    return absl::UnimplementedError("FailingSink::WriteAt");
  }
  uint64_t Size() const override { return size_; }
  absl::Status Commit() override { return absl::OkStatus(); }
  const std::string& name() const override { return name_; }
  using ByteSink::Append;

 private:
  int ok_appends_;
  uint64_t size_ = 0;
  std::string name_ = "<failing>";
};

}  // namespace ucp::formats::zip::testing
