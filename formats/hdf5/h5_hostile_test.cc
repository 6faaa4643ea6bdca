// Hostile and damaged files: each must give a clean Status naming the file, never a crash or an
// allocation of a size the file claims.
#include <hdf5.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>

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

// ---- Files in HDF5's default layout (as h5py writes them): no checksums, global heap ----

// The offset of the only occurrence of `pattern` in the file at `path` (fails the test if there
// is not exactly one).
size_t FindUnique(const std::string& path, const std::vector<uint8_t>& pattern) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string needle(pattern.begin(), pattern.end());
  size_t at = bytes.find(needle);
  EXPECT_NE(at, std::string::npos);
  if (at == std::string::npos) return 0;
  EXPECT_EQ(bytes.find(needle, at + 1), std::string::npos) << "pattern is not unique";
  return at;
}

// Adds scalar variable-length string attribute `name` (h5py's `str`) to `object`.
void AddVariableLengthString(hid_t file, const char* object, const char* name, const char* value) {
  internal_hdf5::ObjectHandle handle(H5Oopen(file, object, H5P_DEFAULT));
  internal_hdf5::TypeHandle type(H5Tcopy(H5T_C_S1));
  ASSERT_GE(H5Tset_size(type.get(), H5T_VARIABLE), 0);
  SpaceHandle space(H5Screate(H5S_SCALAR));
  internal_hdf5::AttrHandle attr(
      H5Acreate2(handle.get(), name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
  ASSERT_TRUE(attr.valid());
  ASSERT_GE(H5Awrite(attr.get(), type.get(), &value), 0);
}

// Open() reads no attribute value but a fixed-length ucp_dtype: a file whose global heap (where
// h5py's `str` attributes live, without a checksum) is damaged opens and reads, and only
// Attributes() of an object with such an attribute fails, as DataLoss naming file and object.
TEST_F(Hdf5HostileTest, OpenReadsNoAttributeValues) {
  float v[4] = {1, 2, 3, 4};
  uint8_t bits[2] = {0, 1};
  std::string path = RawFile("g.h5", [&](hid_t file) {
    AddDataset(file, "w", H5T_IEEE_F32LE, {4}, v);
    AddDataset(file, "b", H5T_STD_U8LE, {2}, bits);
    AddStringAttribute(file, "w", "scale", "fixed-length");
    AddVariableLengthString(file, "w", "units", "logits");
    AddVariableLengthString(file, "b", "ucp_dtype", "bool");  // variable-length: untagged
    AddVariableLengthString(file, "/", "note", "written like h5py");
  });
  {
    auto reader = H5Reader::Open(path);
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_EQ(reader->Find("b")->dtype, DType::kU8) << "a variable-length ucp_dtype is not read";
    auto w = reader->Attributes("w");
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_THAT(*w, ElementsAre(::testing::Pair("scale", AttrValue(std::string("fixed-length"))),
                                ::testing::Pair("units", AttrValue(std::string("logits")))));
    auto b = reader->Attributes("/b");
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_TRUE(b->empty()) << "a dataset's ucp_dtype is not a user attribute";
  }
  // Break the global heap collection's signature.
  testing::Patch(path, FindUnique(path, {'G', 'C', 'O', 'L'}), {'X', 'X', 'X', 'X'});
  auto reader = H5Reader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_EQ(reader->datasets().size(), 2u);
  auto w = reader->Read("w");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(reinterpret_cast<const float*>(w->view.data)[3], 4.0f);
  for (const char* object : {"/", "w"}) {
    auto attributes = reader->Attributes(object);
    EXPECT_EQ(attributes.status().code(), absl::StatusCode::kDataLoss) << object;
    EXPECT_THAT(attributes.status().message(),
                AllOf(HasSubstr("g.h5"), HasSubstr(absl::StrCat("'", object, "'"))));
  }
  EXPECT_TRUE(reader->Attributes("b").ok()) << "its only attribute, ucp_dtype, is not read";
  EXPECT_EQ(reader->Attributes("nope").status().code(), absl::StatusCode::kNotFound);
}

// A damaged character set in a string attribute's type (HDF5 does not check it when decoding)
// is DataLoss naming the file, for fixed- and variable-length strings.
TEST_F(Hdf5HostileTest, DamagedStringCharacterSet) {
  float v[1] = {1};
  // 37 characters: a fixed-length UTF-8 string type of 38 bytes.
  const char* kText = "a fixed-length string of 37 character";
  // Datatype messages, version 1: fixed-length string (class 3; bits 0-3 padding, 4-7 charset,
  // size 38) and variable-length string (class 9; type 1 = string, byte 2 = charset, size 16).
  const std::vector<uint8_t> fixed = {0x13, 0x10, 0, 0, 38, 0, 0, 0};
  const std::vector<uint8_t> variable = {0x19, 0x01, 0, 0, 16, 0, 0, 0};
  for (bool is_variable : {false, true}) {
    std::string path = RawFile("s.h5", [&](hid_t file) {
      AddDataset(file, "x", H5T_IEEE_F32LE, {1}, v);
      if (is_variable) {
        AddVariableLengthString(file, "/", "text", kText);
      } else {
        AddStringAttribute(file, "/", "text", kText);
      }
    });
    const size_t at = FindUnique(path, is_variable ? variable : fixed);
    testing::Patch(path, at + (is_variable ? 2 : 1),
                   {static_cast<uint8_t>(is_variable ? 0x0F : 0xF0)});
    auto reader = H5Reader::Open(path);
    ASSERT_TRUE(reader.ok()) << reader.status();
    auto attributes = reader->Attributes("/");
    EXPECT_EQ(attributes.status().code(), absl::StatusCode::kDataLoss) << is_variable;
    EXPECT_THAT(attributes.status().message(),
                AllOf(HasSubstr("s.h5"), HasSubstr("'text'"), HasSubstr("character set 15")));
  }
}

// Read() compares the declared size with the storage the file holds before it allocates.
TEST_F(Hdf5HostileTest, DeclaredSizeMustBeBackedByStoredData) {
  std::string path = RawFile("s.h5", [&](hid_t file) {
    PropHandle dcpl(H5Pcreate(H5P_DATASET_CREATE));
    hsize_t chunk[1] = {1 << 20};
    H5Pset_chunk(dcpl.get(), 1, chunk);
    AddDataset(file, "chunks", H5T_STD_U8LE, {hsize_t{1} << 30}, nullptr, dcpl.get());  // 1 GiB
    AddDataset(file, "contiguous", H5T_IEEE_F32LE, {hsize_t{1} << 25}, nullptr);        // 128 MiB
    // Small and partly written: the rest is fill value, within kMaxFillBytes.
    PropHandle small(H5Pcreate(H5P_DATASET_CREATE));
    hsize_t small_chunk[1] = {100};
    H5Pset_chunk(small.get(), 1, small_chunk);
    AddDataset(file, "partial", H5T_STD_I32LE, {1000}, nullptr, small.get());
    DatasetHandle partial(H5Dopen2(file, "partial", H5P_DEFAULT));
    SpaceHandle space(H5Dget_space(partial.get()));
    hsize_t start[1] = {0}, count[1] = {100};
    ASSERT_GE(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), 0);
    SpaceHandle memory(H5Screate_simple(1, count, nullptr));
    std::vector<int32_t> ones(100, 1);
    ASSERT_GE(H5Dwrite(partial.get(), H5T_NATIVE_INT32, memory.get(), space.get(), H5P_DEFAULT,
                       ones.data()),
              0);
    AddDataset(file, "unwritten", H5T_IEEE_F32LE, {10}, nullptr);
  });
  EXPECT_LT(std::filesystem::file_size(path), 100000u);
  auto reader = H5Reader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  for (const char* name : {"chunks", "contiguous"}) {
    auto tensor = reader->Read(name);
    EXPECT_EQ(tensor.status().code(), absl::StatusCode::kDataLoss) << name;
    EXPECT_THAT(tensor.status().message(),
                AllOf(HasSubstr("s.h5"), HasSubstr(name), HasSubstr("kMaxFillBytes")));
  }
  const size_t size = size_t{128} << 20;
  std::unique_ptr<std::byte[]> out(new std::byte[size]);  // pages left untouched
  EXPECT_EQ(reader->ReadInto("contiguous", absl::MakeSpan(out.get(), size)).code(),
            absl::StatusCode::kDataLoss);
  auto partial = reader->Read("partial");
  ASSERT_TRUE(partial.ok()) << partial.status();
  const auto* ints = reinterpret_cast<const int32_t*>(partial->view.data);
  EXPECT_EQ(ints[99], 1);
  EXPECT_EQ(ints[100], 0);
  EXPECT_EQ(ints[999], 0);
  auto unwritten = reader->Read("unwritten");
  ASSERT_TRUE(unwritten.ok()) << unwritten.status();
}

// Allocated chunks must be able to decode to their size from the bytes stored: at most 32768x
// through zstd, 1x without filters. Chunks written directly (H5Dwrite_chunk) with 16 bytes
// stand for damaged chunk dims or chunk sizes.
TEST_F(Hdf5HostileTest, ChunksCannotExpandBeyondTheirFilters) {
  const std::vector<uint8_t> payload(16, 0xAB);
  for (bool zstd : {true, false}) {
    std::string path = RawFile("e.h5", [&](hid_t file) {
      PropHandle dcpl(H5Pcreate(H5P_DATASET_CREATE));
      hsize_t chunk[1] = {hsize_t{16} << 20};  // 64 MiB of f32
      H5Pset_chunk(dcpl.get(), 1, chunk);
      const unsigned level = 3;
      if (zstd)
        H5Pset_filter(dcpl.get(), internal_hdf5::kZstdFilterId, H5Z_FLAG_MANDATORY, 1, &level);
      AddDataset(file, "x", H5T_IEEE_F32LE, {hsize_t{16} << 20}, nullptr, dcpl.get());
      DatasetHandle x(H5Dopen2(file, "x", H5P_DEFAULT));
      hsize_t offset[1] = {0};
      ASSERT_GE(H5Dwrite_chunk(x.get(), H5P_DEFAULT, 0, offset, payload.size(), payload.data()), 0);
    });
    auto reader = H5Reader::Open(path);
    ASSERT_TRUE(reader.ok()) << reader.status();
    auto tensor = reader->Read("x");
    EXPECT_EQ(tensor.status().code(), absl::StatusCode::kDataLoss) << zstd;
    EXPECT_THAT(tensor.status().message(),
                AllOf(HasSubstr("e.h5"), HasSubstr("cannot decode from 16 stored bytes"),
                      HasSubstr(zstd ? "at most 32768x" : "at most 1x")));
  }
}

// Mutant #5235 of the legacy-layout survey: a chunked dataset whose dataspace became scalar.
// libhdf5 1.10.8 opens it, and H5Dread on it never returns; Read() must refuse it first.
TEST_F(Hdf5HostileTest, ChunkRankMustMatchDataspaceRank) {
  int64_t v[6] = {1, 2, 3, 4, 5, 6};
  std::string path = RawFile("r.h5", [&](hid_t file) {
    PropHandle dcpl(H5Pcreate(H5P_DATASET_CREATE));
    hsize_t chunk[1] = {2};
    H5Pset_chunk(dcpl.get(), 1, chunk);
    AddDataset(file, "x", H5T_STD_I64LE, {6}, v, dcpl.get());
  });
  // Dataspace message, version 1: rank 1, max dims present, dims {6}, max dims {6}.
  const size_t at = FindUnique(path, {1, 1, 1, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 6});
  testing::Patch(path, at + 1, {0});  // rank 0: scalar
  auto reader = H5Reader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(reader->Find("x")->shape, Shape());
  auto tensor = reader->Read("x");
  EXPECT_EQ(tensor.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(tensor.status().message(),
              AllOf(HasSubstr("r.h5"), HasSubstr("chunks of rank 1 but a dataspace of rank 0")));
}

// Virtual datasets and external storage would make a read take bytes from other files.
TEST_F(Hdf5HostileTest, ExternalStorageIsNotRead) {
  testing::WriteText(Path("raw.bin"), std::string(64, 'x'));
  std::string path = RawFile("x.h5", [&](hid_t file) {
    PropHandle dcpl(H5Pcreate(H5P_DATASET_CREATE));
    ASSERT_GE(H5Pset_external(dcpl.get(), Path("raw.bin").c_str(), 0, 64), 0);
    AddDataset(file, "x", H5T_STD_U8LE, {64}, nullptr, dcpl.get());
  });
  auto reader = H5Reader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto tensor = reader->Read("x");
  EXPECT_EQ(tensor.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(tensor.status().message(), AllOf(HasSubstr("x.h5"), HasSubstr("external files")));
}

}  // namespace
}  // namespace ucp::formats::hdf5
