// Hostile and damaged files: each must give a clean Status naming the file, never a crash or an
// allocation of a size the file claims.
#include <hdf5.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "formats/hdf5/h5_internal.h"
#include "formats/hdf5/h5_reader.h"
#include "formats/hdf5/h5_testutil.h"
#include "formats/hdf5/h5_writer.h"
#include "formats/hdf5/zstd_filter.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::formats::hdf5 {
namespace {

using internal_hdf5::DatasetHandle;
using internal_hdf5::FileHandle;
using internal_hdf5::Hdf5Scope;
using internal_hdf5::PropHandle;
using internal_hdf5::SpaceHandle;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::RandomBytes;
using testing::ViewOf;

class Hdf5HostileTest : public testing::TempDirTest {
 protected:
  // Writes dataset "x" (f32, `values`) with H5Writer and returns the file's path.
  std::string WriteValid(const std::string& name, const std::vector<float>& values,
                         uint64_t chunk_bytes = 1 << 20) {
    std::string path = Path(name);
    WriteOptions options;
    options.chunk_bytes = chunk_bytes;
    auto writer = H5Writer::Create(path, options);
    EXPECT_TRUE(writer.ok());
    EXPECT_TRUE(writer
                    ->WriteTensor("x", ViewOf(DType::kF32,
                                              Shape{static_cast<int64_t>(values.size())}, values))
                    .ok());
    EXPECT_TRUE(writer->Commit().ok());
    return path;
  }

  // File offset and stored size of chunk `index` of dataset "x".
  std::pair<haddr_t, hsize_t> ChunkLocation(const std::string& path, hsize_t index) {
    Hdf5Scope scope;
    FileHandle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    DatasetHandle dataset(H5Dopen2(file.get(), "x", H5P_DEFAULT));
    hsize_t offset[1];
    unsigned mask = 0;
    haddr_t addr = 0;
    hsize_t size = 0;
    SpaceHandle space(H5Dget_space(dataset.get()));
    EXPECT_GE(H5Dget_chunk_info(dataset.get(), space.get(), index, offset, &mask, &addr, &size), 0);
    return {addr, size};
  }

  // Creates a file with plain HDF5 calls; `fill` adds objects to it.
  template <typename Fill>
  std::string RawFile(const std::string& name, Fill fill) {
    std::string path = Path(name);
    Hdf5Scope scope;
    FileHandle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    EXPECT_TRUE(file.valid());
    fill(file.get());
    return path;
  }

  static void AddDataset(hid_t file, const char* name, hid_t type, std::vector<hsize_t> dims,
                         const void* data, hid_t dcpl = H5P_DEFAULT) {
    SpaceHandle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
    DatasetHandle dataset(
        H5Dcreate2(file, name, type, space.get(), H5P_DEFAULT, dcpl, H5P_DEFAULT));
    ASSERT_TRUE(dataset.valid()) << name;
    if (data != nullptr) {
      ASSERT_GE(H5Dwrite(dataset.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
    }
  }

  static void AddStringAttribute(hid_t file, const char* object, const char* name,
                                 const char* value) {
    internal_hdf5::ObjectHandle handle(H5Oopen(file, object, H5P_DEFAULT));
    ASSERT_TRUE(internal_hdf5::WriteAttribute(handle.get(), name, std::string(value)).ok());
  }
};

TEST_F(Hdf5HostileTest, NotAnHdf5File) {
  testing::WriteText(Path("text.h5"), "this is not an HDF5 file, just some text\n");
  auto reader = H5Reader::Open(Path("text.h5"));
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reader.status().message(),
              AllOf(HasSubstr("text.h5"), HasSubstr("not an HDF5 file")));
  testing::WriteText(Path("empty.h5"), "");
  EXPECT_EQ(H5Reader::Open(Path("empty.h5")).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(H5Reader::Open(Path("missing.h5")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(H5Reader::Open(dir_).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(Hdf5HostileTest, TruncatedFile) {
  std::vector<std::byte> noise = RandomBytes(64 * 1024, 1);
  std::vector<float> values(noise.size() / 4);
  std::memcpy(values.data(), noise.data(), noise.size());
  std::string path = WriteValid("t.h5", values);
  for (uintmax_t keep : {std::filesystem::file_size(path) / 2, uintmax_t{100}, uintmax_t{9}}) {
    std::filesystem::resize_file(path, keep);
    auto reader = H5Reader::Open(path);
    ASSERT_FALSE(reader.ok()) << keep;
    EXPECT_THAT(reader.status().code(),
                ::testing::AnyOf(absl::StatusCode::kDataLoss, absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(reader.status().message(), HasSubstr("t.h5"));
  }
}

TEST_F(Hdf5HostileTest, UnregisteredFilter) {
  constexpr H5Z_filter_t kId = 40001;
  H5Z_func_t pass = [](unsigned, size_t, const unsigned[], size_t nbytes, size_t*, void**) {
    return nbytes;
  };
  const H5Z_class2_t dummy = {H5Z_CLASS_T_VERS, kId, 1, 1, "dummy", nullptr, nullptr, pass};
  std::string path;
  {
    Hdf5Scope scope;
    ASSERT_GE(H5Zregister(&dummy), 0);
    path = RawFile("f.h5", [&](hid_t file) {
      PropHandle dcpl(H5Pcreate(H5P_DATASET_CREATE));
      hsize_t chunk[1] = {4};
      H5Pset_chunk(dcpl.get(), 1, chunk);
      H5Pset_filter(dcpl.get(), kId, H5Z_FLAG_MANDATORY, 0, nullptr);
      float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
      AddDataset(file, "x", H5T_IEEE_F32LE, {8}, v, dcpl.get());
    });
    ASSERT_GE(H5Zunregister(kId), 0);
  }
  auto reader = H5Reader::Open(path);
  ASSERT_TRUE(reader.ok()) << "listing needs no filter: " << reader.status();
  auto tensor = reader->Read("x");
  EXPECT_EQ(tensor.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(tensor.status().message(),
              AllOf(HasSubstr("f.h5"), HasSubstr("'x'"), HasSubstr("40001")));
}

TEST_F(Hdf5HostileTest, CorruptedZstdChunks) {
  // Incompressible data (raw zstd blocks: only the checksum notices) and compressible data.
  std::vector<std::byte> noise = RandomBytes(64 * 1024, 2);
  std::vector<float> random(noise.size() / 4);
  std::memcpy(random.data(), noise.data(), noise.size());
  std::vector<float> ramp(16 * 1024);
  for (size_t i = 0; i < ramp.size(); ++i) ramp[i] = static_cast<float>(i % 100);
  for (const auto* values : {&random, &ramp}) {
    std::string path = WriteValid("c.h5", *values, 16 * 1024);
    auto [addr, size] = ChunkLocation(path, 1);
    ASSERT_GT(size, 20u);
    testing::FlipBytes(path, addr + size / 2, 3);
    auto reader = H5Reader::Open(path);
    ASSERT_TRUE(reader.ok()) << reader.status();
    auto tensor = reader->Read("x");
    EXPECT_EQ(tensor.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(tensor.status().message(),
                AllOf(HasSubstr("c.h5"), HasSubstr("'x'"), HasSubstr("zstd")));
    std::vector<std::byte> out(values->size() * 4);
    EXPECT_EQ(reader->ReadInto("x", absl::MakeSpan(out)).code(), absl::StatusCode::kDataLoss);
  }
}

TEST_F(Hdf5HostileTest, ZstdFrameClaimingHugeOrUnknownSize) {
  std::vector<float> ramp(4096);
  for (size_t i = 0; i < ramp.size(); ++i) ramp[i] = static_cast<float>(i % 100);
  // Frame header: magic, descriptor 0xE0 (single segment, 8-byte content size), size 2^40.
  const std::vector<uint8_t> huge = {0x28, 0xB5, 0x2F, 0xFD, 0xE0, 0, 0, 0, 0, 0, 1, 0, 0};
  // Descriptor 0x00: no content size, then a window descriptor.
  const std::vector<uint8_t> unknown = {0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x50};
  for (const auto& [header, expected] : {std::pair{huge, "declares 1099511627776 bytes"},
                                         std::pair{unknown, "does not record its size"}}) {
    std::string path = WriteValid("h.h5", ramp, 4096);
    auto [addr, size] = ChunkLocation(path, 0);
    ASSERT_GE(size, header.size());
    testing::Patch(path, addr, header);
    auto reader = H5Reader::Open(path);
    ASSERT_TRUE(reader.ok());
    auto tensor = reader->Read("x");
    EXPECT_EQ(tensor.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(tensor.status().message(), AllOf(HasSubstr("h.h5"), HasSubstr(expected)));
  }
}

TEST_F(Hdf5HostileTest, DTypeAttributeMustMatchStoredType) {
  float v[2] = {1, 2};
  std::string wrong = RawFile("w.h5", [&](hid_t file) {
    AddDataset(file, "x", H5T_IEEE_F32LE, {2}, v);
    AddStringAttribute(file, "x", "ucp_dtype", "i32");
  });
  auto reader = H5Reader::Open(wrong);
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(reader.status().message(),
              AllOf(HasSubstr("w.h5"), HasSubstr("'x'"), HasSubstr("i32")));
  std::string unknown = RawFile("u.h5", [&](hid_t file) {
    AddDataset(file, "x", H5T_IEEE_F32LE, {2}, v);
    AddStringAttribute(file, "x", "ucp_dtype", "complex128");
  });
  EXPECT_EQ(H5Reader::Open(unknown).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(Hdf5HostileTest, BoolBytesOtherThanZeroOrOne) {
  uint8_t v[3] = {0, 1, 7};
  std::string path = RawFile("b.h5", [&](hid_t file) {
    AddDataset(file, "x", H5T_STD_U8LE, {3}, v);
    AddStringAttribute(file, "x", "ucp_dtype", "bool");
  });
  auto reader = H5Reader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(reader->Read("x").status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(Hdf5HostileTest, HugeDimsAreRefusedBeforeAllocating) {
  std::string path = RawFile("d.h5", [&](hid_t file) {
    PropHandle dcpl(H5Pcreate(H5P_DATASET_CREATE));
    hsize_t chunk[2] = {1, 1024};
    H5Pset_chunk(dcpl.get(), 2, chunk);
    AddDataset(file, "big", H5T_STD_U8LE, {hsize_t{1} << 29, 1024}, nullptr,
               dcpl.get());  // 512 GiB, unwritten
  });
  auto reader = H5Reader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto tensor = reader->Read("big");
  EXPECT_EQ(tensor.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(tensor.status().message(), AllOf(HasSubstr("d.h5"), HasSubstr("kMaxDatasetBytes")));

  std::string overflow = RawFile("o.h5", [&](hid_t file) {
    PropHandle dcpl(H5Pcreate(H5P_DATASET_CREATE));
    hsize_t chunk[3] = {1, 1, 1};
    H5Pset_chunk(dcpl.get(), 3, chunk);
    AddDataset(file, "x", H5T_STD_U8LE, {hsize_t{1} << 30, hsize_t{1} << 30, 4}, nullptr,
               dcpl.get());
  });
  auto bad = H5Reader::Open(overflow);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(bad.status().message(), HasSubstr("o.h5"));
}

TEST_F(Hdf5HostileTest, LinkCyclesAndNonHardLinks) {
  int32_t v[1] = {5};
  std::string path = RawFile("l.h5", [&](hid_t file) {
    AddDataset(file, "x", H5T_STD_I32LE, {1}, v);
    ASSERT_GE(H5Gclose(H5Gcreate2(file, "g", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)), 0);
    ASSERT_GE(H5Lcreate_hard(file, "/", file, "g/loop", H5P_DEFAULT, H5P_DEFAULT), 0);
    ASSERT_GE(H5Lcreate_soft("/x", file, "g/soft", H5P_DEFAULT, H5P_DEFAULT), 0);
    ASSERT_GE(H5Lcreate_external("/etc/passwd", "/x", file, "g/ext", H5P_DEFAULT, H5P_DEFAULT), 0);
  });
  auto reader = H5Reader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<std::string> names;
  for (const DatasetInfo& info : reader->datasets()) names.push_back(info.path);
  EXPECT_THAT(names, ElementsAre("x"));
}

TEST_F(Hdf5HostileTest, UnsupportedTypesAndSpaces) {
  uint16_t u16[2] = {1, 2};
  auto reader = H5Reader::Open(
      RawFile("u16.h5", [&](hid_t file) { AddDataset(file, "x", H5T_STD_U16LE, {2}, u16); }));
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(reader.status().message(), AllOf(HasSubstr("u16.h5"), HasSubstr("'x'")));
  std::string null_space = RawFile("n.h5", [&](hid_t file) {
    SpaceHandle space(H5Screate(H5S_NULL));
    DatasetHandle d(
        H5Dcreate2(file, "x", H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    ASSERT_TRUE(d.valid());
  });
  EXPECT_EQ(H5Reader::Open(null_space).status().code(), absl::StatusCode::kUnimplemented);
}

// Files from other zstd writers carry only cd_values[0] (the level). ucp's reader supplies the
// chunk size itself, so they read; through the plugin alone they would fail cleanly.
TEST_F(Hdf5HostileTest, ReadsZstdDatasetsWithoutRecordedChunkSize) {
  H5Z_class2_t legacy = *internal_hdf5::ZstdFilterClass();
  legacy.set_local = nullptr;
  std::vector<float> values(5000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.25f;
  std::string path;
  {
    Hdf5Scope scope;
    ASSERT_GE(H5Zregister(&legacy), 0);
    path = RawFile("legacy.h5", [&](hid_t file) {
      PropHandle dcpl(H5Pcreate(H5P_DATASET_CREATE));
      hsize_t chunk[1] = {1000};
      const unsigned level = 5;
      H5Pset_chunk(dcpl.get(), 1, chunk);
      H5Pset_filter(dcpl.get(), internal_hdf5::kZstdFilterId, H5Z_FLAG_MANDATORY, 1, &level);
      AddDataset(file, "x", H5T_IEEE_F32LE, {values.size()}, values.data(), dcpl.get());
    });
    ASSERT_GE(H5Zregister(internal_hdf5::ZstdFilterClass()), 0);
  }
  auto reader = H5Reader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto tensor = reader->Read("x");
  ASSERT_TRUE(tensor.ok()) << tensor.status();
  EXPECT_EQ(std::memcmp(tensor->view.data, values.data(), values.size() * 4), 0);
}

}  // namespace
}  // namespace ucp::formats::hdf5
