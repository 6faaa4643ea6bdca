// Writer → reader round trips: every DType, scalars, empty and multi-chunk tensors, nested
// groups, strided input, attributes, atomic commit, compression, files written by plain HDF5.
#include <hdf5.h>

#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "formats/hdf5/h5_internal.h"
#include "formats/hdf5/h5_reader.h"
#include "formats/hdf5/h5_testutil.h"
#include "formats/hdf5/h5_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::formats::hdf5 {
namespace {

using testing::BytesOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using testing::RandomBytes;
using testing::ViewOf;

class Hdf5RoundTripTest : public testing::TempDirTest {
 protected:
  // Opens `path` with the plain HDF5 API (for checks the reader does not expose).
  internal_hdf5::FileHandle OpenRaw(const std::string& path) {
    internal_hdf5::Hdf5Scope scope;
    return internal_hdf5::FileHandle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  }
};

// Bytes valid for `dtype` (bools are 0/1; any bit pattern is a valid float).
std::vector<std::byte> SampleBytes(DType dtype, int64_t elements, uint64_t seed) {
  std::vector<std::byte> bytes =
      RandomBytes(static_cast<size_t>(elements * DTypeSize(dtype)), seed);
  if (dtype == DType::kBool) {
    for (auto& b : bytes) b &= std::byte{1};
  }
  return bytes;
}

TEST_F(Hdf5RoundTripTest, EveryDTypeRoundTrips) {
  const Shape shape{3, 5};
  std::vector<std::vector<std::byte>> data;
  {
    auto writer = H5Writer::Create(Path("all.h5"));
    ASSERT_TRUE(writer.ok()) << writer.status();
    for (int i = 0; i < kNumDTypes; ++i) {
      DType dtype = static_cast<DType>(i);
      data.push_back(SampleBytes(dtype, 15, i + 1));
      std::string name = absl::StrCat("t/", DTypeName(dtype));
      ASSERT_TRUE(writer->WriteTensor(name, TensorView{dtype, shape, {}, data.back().data()}).ok());
    }
    ASSERT_TRUE(writer->Commit().ok());
  }
  auto reader = H5Reader::Open(Path("all.h5"));
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_EQ(reader->datasets().size(), static_cast<size_t>(kNumDTypes));
  for (int i = 0; i < kNumDTypes; ++i) {
    DType dtype = static_cast<DType>(i);
    std::string name = absl::StrCat("t/", DTypeName(dtype));
    const DatasetInfo* info = reader->Find(name);
    ASSERT_NE(info, nullptr) << name;
    EXPECT_EQ(info->dtype, dtype) << name;
    EXPECT_EQ(info->shape, shape);
    auto attributes = reader->Attributes(name);
    ASSERT_TRUE(attributes.ok()) << attributes.status();
    EXPECT_TRUE(attributes->empty()) << "ucp_dtype is not reported as a user attribute";
    auto tensor = reader->Read(name);
    ASSERT_TRUE(tensor.ok()) << tensor.status();
    EXPECT_EQ(tensor->view.dtype, dtype);
    EXPECT_EQ(BytesOf(tensor->view, data[i].size()), data[i]) << name;
    std::vector<std::byte> into(data[i].size());
    ASSERT_TRUE(reader->ReadInto("/" + name, absl::MakeSpan(into)).ok());
    EXPECT_EQ(into, data[i]);
  }
}

TEST_F(Hdf5RoundTripTest, ScalarAndEmptyTensors) {
  std::vector<double> scalar{2.5};
  std::vector<float> none;
  {
    auto writer = H5Writer::Create(Path("s.h5"));
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer->WriteTensor("scalar", ViewOf(DType::kF64, Shape{}, scalar)).ok());
    ASSERT_TRUE(writer->WriteTensor("empty1", ViewOf(DType::kF32, Shape{0}, none)).ok());
    ASSERT_TRUE(
        writer->WriteTensor("empty3", TensorView{DType::kBF16, Shape{2, 0, 3}, {}, nullptr}).ok());
    ASSERT_TRUE(writer->Commit().ok());
  }
  auto reader = H5Reader::Open(Path("s.h5"));
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto s = reader->Read("scalar");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->view.shape, Shape{});
  EXPECT_EQ(*reinterpret_cast<const double*>(s->view.data), 2.5);
  auto e1 = reader->Read("empty1");
  ASSERT_TRUE(e1.ok()) << e1.status();
  EXPECT_EQ(e1->view.shape, Shape{0});
  auto e3 = reader->Read("empty3");
  ASSERT_TRUE(e3.ok()) << e3.status();
  EXPECT_EQ(e3->view.shape, (Shape{2, 0, 3}));
  EXPECT_EQ(e3->view.dtype, DType::kBF16);
}

TEST_F(Hdf5RoundTripTest, MultiChunkTensorsAndChunkShapes) {
  struct Case {
    DType dtype;
    Shape shape;
    uint64_t chunk_bytes;
  };
  const std::vector<Case> cases = {
      {DType::kF32, Shape{1000, 37}, 4096},  // rows cut
      {DType::kU8, Shape{3, 5000}, 1000},    // the last dim itself is cut
      {DType::kF64, Shape{7, 3, 11}, 100},   // odd sizes, edge chunks everywhere
      {DType::kI16, Shape{10}, 1},           // budget below one element: one element per chunk
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    std::string path = Path(absl::StrCat("m", i, ".h5"));
    int64_t elements = *c.shape.NumElements();
    std::vector<std::byte> data = SampleBytes(c.dtype, elements, i);
    WriteOptions options;
    options.chunk_bytes = c.chunk_bytes;
    {
      auto writer = H5Writer::Create(path, options);
      ASSERT_TRUE(writer.ok());
      ASSERT_TRUE(writer->WriteTensor("x", TensorView{c.dtype, c.shape, {}, data.data()}).ok());
      ASSERT_TRUE(writer->Commit().ok());
    }
    {
      internal_hdf5::FileHandle file = OpenRaw(path);
      internal_hdf5::DatasetHandle dataset(H5Dopen2(file.get(), "x", H5P_DEFAULT));
      internal_hdf5::SpaceHandle space(H5Dget_space(dataset.get()));
      hsize_t chunks = 0;
      ASSERT_GE(H5Dget_num_chunks(dataset.get(), space.get(), &chunks), 0);
      EXPECT_GT(chunks, 1u) << c.shape.ToString();
    }
    auto reader = H5Reader::Open(path);
    ASSERT_TRUE(reader.ok()) << reader.status();
    auto tensor = reader->Read("x");
    ASSERT_TRUE(tensor.ok()) << tensor.status();
    EXPECT_EQ(BytesOf(tensor->view, data.size()), data) << c.shape.ToString();
  }
}

TEST_F(Hdf5RoundTripTest, NestedGroupsListedDepthFirstByName) {
  std::vector<int32_t> v{1, 2, 3};
  {
    auto writer = H5Writer::Create(Path("g.h5"));
    ASSERT_TRUE(writer.ok());
    for (const char* name : {"b/z", "/a/c/d/e", "a/b", "a-b", "top"}) {
      ASSERT_TRUE(writer->WriteTensor(name, ViewOf(DType::kI32, Shape{3}, v)).ok()) << name;
    }
    ASSERT_TRUE(writer->Commit().ok());
  }
  auto reader = H5Reader::Open(Path("g.h5"));
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<std::string> names;
  for (const DatasetInfo& info : reader->datasets()) names.push_back(info.path);
  EXPECT_THAT(names, ElementsAre("a/b", "a/c/d/e", "a-b", "b/z", "top"));
  EXPECT_NE(reader->Find("/a/c/d/e"), nullptr);
  EXPECT_EQ(reader->Find("a/c"), nullptr);
  EXPECT_TRUE(reader->Attributes("a/c/d").ok()) << "groups have (empty) attribute lists";
}

TEST_F(Hdf5RoundTripTest, StridedInputIsWrittenRowMajor) {
  // A 3x4 row-major matrix viewed transposed (4x3, strides {1, 4}).
  std::vector<int16_t> m{0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23};
  TensorView transposed{
      DType::kI16, Shape{4, 3}, {1, 4}, reinterpret_cast<const std::byte*>(m.data())};
  {
    auto writer = H5Writer::Create(Path("t.h5"));
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer->WriteTensor("t", transposed).ok());
    ASSERT_TRUE(writer->Commit().ok());
  }
  auto reader = H5Reader::Open(Path("t.h5"));
  ASSERT_TRUE(reader.ok());
  auto t = reader->Read("t");
  ASSERT_TRUE(t.ok());
  const auto* out = reinterpret_cast<const int16_t*>(t->view.data);
  EXPECT_THAT(std::vector<int16_t>(out, out + 12),
              ElementsAre(0, 10, 20, 1, 11, 21, 2, 12, 22, 3, 13, 23));
}

TEST_F(Hdf5RoundTripTest, AttributesOfEachKind) {
  std::vector<float> v{1, 2};
  {
    auto writer = H5Writer::Create(Path("a.h5"));
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer->WriteTensor("g/w", ViewOf(DType::kF32, Shape{2}, v)).ok());
    ASSERT_TRUE(writer->SetAttribute("/", "step", int64_t{-7}).ok());
    ASSERT_TRUE(writer->SetAttribute("/", "lr", 0.125).ok());
    ASSERT_TRUE(writer->SetAttribute("/", "name", std::string("ünïcode ✓")).ok());
    ASSERT_TRUE(writer->SetAttribute("/", "empty_text", std::string()).ok());
    ASSERT_TRUE(writer->SetAttribute("/", "shape", std::vector<int64_t>{4, -1, 9}).ok());
    ASSERT_TRUE(writer->SetAttribute("/", "none", std::vector<int64_t>{}).ok());
    ASSERT_TRUE(writer->SetAttribute("g", "kind", std::string("group")).ok());
    ASSERT_TRUE(writer->SetAttribute("g/w", "rank", int64_t{3}).ok());
    ASSERT_TRUE(writer->SetAttribute("g/w", "rank", int64_t{4}).ok()) << "replacing is allowed";
    EXPECT_EQ(writer->SetAttribute("g/w", "ucp_dtype", std::string("f64")).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(writer->SetAttribute("nope", "x", int64_t{1}).code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(writer->SetAttribute("/", "nul", std::string("a\0b", 3)).code(),
              absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE(writer->Commit().ok());
  }
  auto reader = H5Reader::Open(Path("a.h5"));
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto root = reader->Attributes("/");
  ASSERT_TRUE(root.ok());
  EXPECT_THAT(
      *root, ElementsAre(Pair("empty_text", AttrValue(std::string())), Pair("lr", AttrValue(0.125)),
                         Pair("name", AttrValue(std::string("ünïcode ✓"))),
                         Pair("none", AttrValue(std::vector<int64_t>{})),
                         Pair("shape", AttrValue(std::vector<int64_t>{4, -1, 9})),
                         Pair("step", AttrValue(int64_t{-7}))));
  EXPECT_THAT(*reader->Attributes("g"), ElementsAre(Pair("kind", AttrValue(std::string("group")))));
  EXPECT_THAT(*reader->Attributes("/g/w"), ElementsAre(Pair("rank", AttrValue(int64_t{4}))));
  EXPECT_EQ(reader->Attributes("missing").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(Hdf5RoundTripTest, WriterErrors) {
  std::vector<float> v{1};
  auto writer = H5Writer::Create(Path("e.h5"));
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer->WriteTensor("a/x", ViewOf(DType::kF32, Shape{1}, v)).ok());
  absl::Status dup = writer->WriteTensor("/a/x", ViewOf(DType::kF32, Shape{1}, v));
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(dup.message(), HasSubstr("e.h5"));
  for (const char* bad : {"", "/", "a//b", "a/./b", "../x"}) {
    EXPECT_EQ(writer->WriteTensor(bad, ViewOf(DType::kF32, Shape{1}, v)).code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_FALSE(writer->WriteTensor("a/x/under_a_dataset", ViewOf(DType::kF32, Shape{1}, v)).ok());
  EXPECT_EQ(writer->WriteTensor("neg", ViewOf(DType::kF32, Shape{-1}, v)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(writer->WriteTensor("null", TensorView{DType::kF32, Shape{2}, {}, nullptr}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(writer
                ->WriteTensor("strides", TensorView{DType::kF32,
                                                    Shape{1},
                                                    {1, 1},
                                                    reinterpret_cast<const std::byte*>(v.data())})
                .code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> not_bool{0, 2};
  EXPECT_EQ(writer->WriteTensor("b", ViewOf(DType::kBool, Shape{2}, not_bool)).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(writer->Commit().ok());
  EXPECT_EQ(writer->WriteTensor("late", ViewOf(DType::kF32, Shape{1}, v)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(writer->Commit().code(), absl::StatusCode::kFailedPrecondition);

  WriteOptions bad_level;
  bad_level.zstd_level = 100;
  EXPECT_EQ(H5Writer::Create(Path("l.h5"), bad_level).status().code(),
            absl::StatusCode::kInvalidArgument);
  WriteOptions bad_chunk;
  bad_chunk.chunk_bytes = 0;
  EXPECT_EQ(H5Writer::Create(Path("c.h5"), bad_chunk).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(H5Writer::Create(Path("no/such/dir/x.h5")).ok());
}

TEST_F(Hdf5RoundTripTest, CommitIsAtomicAndAbandonedWritesLeaveNothing) {
  std::vector<float> v{1, 2, 3};
  {
    auto writer = H5Writer::Create(Path("abandoned.h5"));
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer->WriteTensor("x", ViewOf(DType::kF32, Shape{3}, v)).ok());
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir_)) << "temp file removed, target never created";
  {
    auto writer = H5Writer::Create(Path("kept.h5"));
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer->WriteTensor("x", ViewOf(DType::kF32, Shape{3}, v)).ok());
    EXPECT_FALSE(std::filesystem::exists(Path("kept.h5")));
    H5Writer moved = std::move(*writer);
    ASSERT_TRUE(moved.Commit().ok());
  }
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    files.push_back(entry.path().filename());
  }
  EXPECT_THAT(files, ElementsAre("kept.h5"));
}

TEST_F(Hdf5RoundTripTest, CompressibleTensorIsStoredCompressed) {
  std::vector<float> v(1 << 20);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 64);
  {
    auto writer = H5Writer::Create(Path("z.h5"));
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer->WriteTensor("z", ViewOf(DType::kF32, Shape{1024, 1024}, v)).ok());
    ASSERT_TRUE(writer->Commit().ok());
  }
  internal_hdf5::FileHandle file = OpenRaw(Path("z.h5"));
  internal_hdf5::DatasetHandle dataset(H5Dopen2(file.get(), "z", H5P_DEFAULT));
  hsize_t stored = H5Dget_storage_size(dataset.get());
  EXPECT_GT(stored, 0u);
  EXPECT_LT(stored, v.size() * sizeof(float) / 50) << "4 MiB of a repeating ramp compresses > 50x";
  EXPECT_LT(std::filesystem::file_size(Path("z.h5")), v.size() * sizeof(float) / 50);
}

// All-zero chunks are zstd's densest case (RLE blocks, about 19,000x for a 1 MiB chunk): they
// stay within the expansion bound Read() checks before allocating.
TEST_F(Hdf5RoundTripTest, AllZeroTensorsRead) {
  std::vector<float> zeros(size_t{4} << 20);
  std::vector<uint8_t> zero_bytes(size_t{4} << 20);
  WriteOptions no_shuffle;
  no_shuffle.shuffle = false;
  no_shuffle.zstd_level = 19;
  for (const WriteOptions& options : {WriteOptions(), no_shuffle}) {
    {
      auto writer = H5Writer::Create(Path("zeros.h5"), options);
      ASSERT_TRUE(writer.ok());
      ASSERT_TRUE(writer->WriteTensor("f", ViewOf(DType::kF32, Shape{4, 1 << 20}, zeros)).ok());
      ASSERT_TRUE(writer->WriteTensor("u", ViewOf(DType::kU8, Shape{4 << 20}, zero_bytes)).ok());
      ASSERT_TRUE(writer->Commit().ok());
    }
    EXPECT_LT(std::filesystem::file_size(Path("zeros.h5")), 20000u);
    auto reader = H5Reader::Open(Path("zeros.h5"));
    ASSERT_TRUE(reader.ok()) << reader.status();
    for (const char* name : {"f", "u"}) {
      auto tensor = reader->Read(name);
      ASSERT_TRUE(tensor.ok()) << name << ": " << tensor.status();
    }
  }
}

// Files written with plain HDF5 calls (as h5py or other tools would): no ucp_dtype attribute,
// big-endian integers, an untagged u8, an unsupported type.
TEST_F(Hdf5RoundTripTest, ReadsUntaggedForeignDatasets) {
  {
    internal_hdf5::Hdf5Scope scope;
    internal_hdf5::FileHandle file(
        H5Fcreate(Path("f.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    hsize_t dims[1] = {3};
    internal_hdf5::SpaceHandle space(H5Screate_simple(1, dims, nullptr));
    int32_t ints[3] = {-1, 2, 300000};
    internal_hdf5::DatasetHandle be(H5Dcreate2(file.get(), "be_i32", H5T_STD_I32BE, space.get(),
                                               H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    ASSERT_GE(H5Dwrite(be.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ints), 0);
    uint8_t bytes[3] = {0, 7, 255};
    internal_hdf5::DatasetHandle u8(H5Dcreate2(file.get(), "u8", H5T_STD_U8LE, space.get(),
                                               H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    ASSERT_GE(H5Dwrite(u8.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes), 0);
    double d[3] = {1, 2, 3};
    internal_hdf5::DatasetHandle f64(H5Dcreate2(file.get(), "f64be", H5T_IEEE_F64BE, space.get(),
                                                H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    ASSERT_GE(H5Dwrite(f64.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, d), 0);
  }
  auto reader = H5Reader::Open(Path("f.h5"));
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(reader->Find("be_i32")->dtype, DType::kI32);
  EXPECT_EQ(reader->Find("u8")->dtype, DType::kU8);
  EXPECT_EQ(reader->Find("f64be")->dtype, DType::kF64);
  auto be = reader->Read("be_i32");
  ASSERT_TRUE(be.ok());
  const auto* ints = reinterpret_cast<const int32_t*>(be->view.data);
  EXPECT_THAT(std::vector<int32_t>(ints, ints + 3), ElementsAre(-1, 2, 300000));
  auto f64 = reader->Read("f64be");
  ASSERT_TRUE(f64.ok());
  EXPECT_EQ(reinterpret_cast<const double*>(f64->view.data)[2], 3.0);
}

TEST_F(Hdf5RoundTripTest, ConcurrentReadsFromOneReader) {
  constexpr int kTensors = 8;
  std::vector<std::vector<std::byte>> data;
  WriteOptions options;
  options.chunk_bytes = 1000 + 1;
  {
    auto writer = H5Writer::Create(Path("c.h5"), options);
    ASSERT_TRUE(writer.ok());
    for (int i = 0; i < kTensors; ++i) {
      data.push_back(SampleBytes(DType::kF32, (i + 1) * 1000, i));
      ASSERT_TRUE(writer
                      ->WriteTensor(
                          absl::StrCat("t", i),
                          TensorView{DType::kF32, Shape{(i + 1) * 10, 100}, {}, data.back().data()})
                      .ok());
    }
    ASSERT_TRUE(writer->Commit().ok());
  }
  auto reader = H5Reader::Open(Path("c.h5"));
  ASSERT_TRUE(reader.ok());
  std::vector<int> failures(kTensors, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kTensors; ++i) {
    threads.emplace_back([&, i] {
      for (int round = 0; round < 5; ++round) {
        auto t = reader->Read(absl::StrCat("t", i));
        if (!t.ok() || BytesOf(t->view, data[i].size()) != data[i]) ++failures[i];
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_THAT(failures, ::testing::Each(0));
}

}  // namespace
}  // namespace ucp::formats::hdf5
