// Writer → reader round trips, the exact bytes the writer produces, and the reader's API.
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "formats/base/scratch_dir_testutil.h"
#include "formats/safetensors/safetensors_testutil.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace ucp::formats::safetensors {
namespace {

using testing::AsString;
using ::testing::HasSubstr;
using testing::OpenBytes;
using testing::OwnedTensor;
using testing::RandomTensor;
using Metadata = std::vector<std::pair<std::string, std::string>>;

std::string WriteToString(const std::vector<OwnedTensor>& tensors, const Metadata& metadata = {}) {
  MemorySink sink;
  std::vector<WriteTensor> views = testing::ToWrite(tensors);
  absl::Status status = Write(sink, views, metadata);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_FALSE(sink.committed());
  return AsString(sink.bytes());
}

absl::string_view BytesOf(const SharedTensor& t, size_t size) {
  return {reinterpret_cast<const char*>(t.view.data), size};
}

// Reads `file` back and checks it holds exactly `tensors` (in order) and `metadata`.
void ExpectRoundTrip(const std::string& file, const std::vector<OwnedTensor>& tensors,
                     const Metadata& metadata) {
  absl::StatusOr<SafetensorsReader> reader = OpenBytes(file);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(reader->metadata(), metadata);
  ASSERT_EQ(reader->tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& info = reader->tensors()[i];
    SCOPED_TRACE(info.name);
    EXPECT_EQ(info.name, tensors[i].name);
    EXPECT_EQ(info.dtype, tensors[i].dtype);
    EXPECT_EQ(info.shape, tensors[i].shape);
    EXPECT_EQ(info.end - info.begin, tensors[i].bytes.size());
    EXPECT_EQ(reader->Find(info.name), &info);
    absl::StatusOr<SharedTensor> read = reader->Read(info);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->view.dtype, tensors[i].dtype);
    EXPECT_EQ(read->view.shape, tensors[i].shape);
    EXPECT_TRUE(read->view.IsContiguous());
    EXPECT_EQ(BytesOf(*read, tensors[i].bytes.size()), AsString(tensors[i].bytes));
    if (!tensors[i].bytes.empty()) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(read->view.data) % DTypeSize(info.dtype), 0u);
    }
  }
}

TEST(SafetensorsRoundTripTest, EveryDTypeWithScalarsAndEmptyTensors) {
  std::mt19937_64 rng(1);
  std::vector<OwnedTensor> tensors;
  const std::vector<Shape> shapes = {Shape{}, Shape{0}, Shape{3, 0, 2}, Shape{7}, Shape{2, 3, 4}};
  for (int d = 0; d < kNumDTypes; ++d) {
    const auto dtype = static_cast<DType>(d);
    for (size_t s = 0; s < shapes.size(); ++s) {
      tensors.push_back(
          RandomTensor(rng, absl::StrCat(DTypeName(dtype), ".", s), dtype, shapes[s]));
    }
  }
  const Metadata metadata = {{"format", "pt"}, {"z", "last"}, {"a", "first \"quoted\"\n\xC3\xA9"}};
  ExpectRoundTrip(WriteToString(tensors, metadata), tensors, metadata);
}

std::string RandomText(std::mt19937_64& rng) {
  static constexpr absl::string_view kPieces[] = {"a",
                                                  "Z",
                                                  ".",
                                                  "_",
                                                  "0",
                                                  " ",
                                                  "\"",
                                                  "\\",
                                                  "\n",
                                                  "\x01",
                                                  "\x7F",
                                                  "\xC3\xA9",
                                                  "\xF0\x9F\x98\x80"};
  std::string out;
  const size_t length = rng() % 6;
  for (size_t i = 0; i < length; ++i) absl::StrAppend(&out, kPieces[rng() % std::size(kPieces)]);
  return out;
}

TEST(SafetensorsRoundTripTest, RandomFiles) {
  std::mt19937_64 rng(2);
  for (int iteration = 0; iteration < 300; ++iteration) {
    SCOPED_TRACE(iteration);
    std::vector<OwnedTensor> tensors;
    const size_t count = rng() % 9;
    for (size_t i = 0; i < count; ++i) {
      std::vector<int64_t> dims(rng() % 5);
      for (int64_t& dim : dims) dim = static_cast<int64_t>(rng() % 8 == 0 ? 0 : 1 + rng() % 4);
      const auto dtype = static_cast<DType>(rng() % kNumDTypes);
      tensors.push_back(RandomTensor(rng, absl::StrCat(i, RandomText(rng)), dtype, Shape(dims)));
    }
    Metadata metadata;
    const size_t metadata_count = rng() % 4;
    for (size_t i = 0; i < metadata_count; ++i) {
      metadata.emplace_back(absl::StrCat(i, RandomText(rng)), RandomText(rng));
    }
    // Largest dtypes first keeps every tensor aligned, as the Rust writer arranges.
    std::stable_sort(tensors.begin(), tensors.end(),
                     [](const OwnedTensor& a, const OwnedTensor& b) {
                       return DTypeSize(a.dtype) > DTypeSize(b.dtype);
                     });
    ExpectRoundTrip(WriteToString(tensors, metadata), tensors, metadata);
  }
}

TEST(SafetensorsRoundTripTest, MatchesTheReferenceWriterBytes) {
  // safetensors' own serialization test: "attn.0", F32 [1, 2, 3] holding 0..5.
  OwnedTensor t{"attn.0", DType::kF32, Shape{1, 2, 3}, {}};
  for (float f : {0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f}) {
    const auto* p = reinterpret_cast<const std::byte*>(&f);
    t.bytes.insert(t.bytes.end(), p, p + sizeof(f));
  }
  const std::string expected_json =
      R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
  ASSERT_EQ(expected_json.size(), 64u);
  EXPECT_EQ(WriteToString({t}), testing::RawFile(expected_json, AsString(t.bytes)));
}

TEST(SafetensorsRoundTripTest, HeaderIsSpacePaddedToAMultipleOfEight) {
  std::mt19937_64 rng(3);
  for (size_t length = 0; length < 17; ++length) {
    const std::vector<OwnedTensor> tensors = {
        RandomTensor(rng, std::string(length, 'n'), DType::kF64, Shape{2})};
    const std::string file = WriteToString(tensors, {{"k", std::string(length % 3, 'v')}});
    const uint64_t header_length = internal_safetensors::LoadLittleEndian64(
        {reinterpret_cast<const std::byte*>(file.data()), 8});
    EXPECT_EQ(header_length % 8, 0u);
    EXPECT_EQ(file.size(), 8 + header_length + 16);
    const std::string json = file.substr(8, header_length);
    const size_t close = json.rfind('}');
    EXPECT_EQ(json.find_first_not_of(' ', close + 1), std::string::npos);
    EXPECT_LT(json.size() - close - 1, 8u);
    nlohmann::json doc = nlohmann::json::parse(json);
    EXPECT_EQ(doc[std::string(length, 'n')]["data_offsets"], nlohmann::json::array({0, 16}));
    EXPECT_EQ(doc["__metadata__"]["k"], std::string(length % 3, 'v'));
  }
  EXPECT_EQ(WriteToString({}), testing::RawFile("{}      ", ""));
}

TEST(SafetensorsRoundTripTest, EmptyFileHasNoTensors) {
  absl::StatusOr<SafetensorsReader> reader = OpenBytes(WriteToString({}));
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_TRUE(reader->tensors().empty());
  EXPECT_TRUE(reader->metadata().empty());
}

TEST(SafetensorsRoundTripTest, MappedFileReadsAreZeroCopyAndOutliveTheReader) {
  std::mt19937_64 rng(4);
  const std::vector<OwnedTensor> tensors = {RandomTensor(rng, "w", DType::kBF16, Shape{64, 3}),
                                            RandomTensor(rng, "b", DType::kU8, Shape{5})};
  const testutil::ScratchDir scratch;
  const std::string path = scratch.File("mapped.safetensors");
  {
    auto sink = CreateFileSink(path, {.overwrite = true, .fsync = false});
    ASSERT_TRUE(sink.ok()) << sink.status();
    ASSERT_TRUE(Write(**sink, testing::ToWrite(tensors)).ok());
    ASSERT_TRUE((*sink)->Commit().ok());
  }
  SharedTensor kept;
  {
    auto source = OpenFileSource(path);
    ASSERT_TRUE(source.ok()) << source.status();
    auto reader = SafetensorsReader::Open(*source);
    ASSERT_TRUE(reader.ok()) << reader.status();
    auto read = reader->Read("w");
    ASSERT_TRUE(read.ok()) << read.status();
    const Buffer mapping = *(*source)->Map();
    EXPECT_EQ(read->view.data, mapping.data() + reader->Find("w")->begin);
    kept = *read;
  }
  ::unlink(path.c_str());
  EXPECT_EQ(BytesOf(kept, tensors[0].bytes.size()), AsString(tensors[0].bytes));

  // Without a mapping, reads are copies.
  const std::string path2 = scratch.File("unmapped.safetensors");
  auto sink = CreateFileSink(path2, {.overwrite = true, .fsync = false});
  ASSERT_TRUE(sink.ok());
  ASSERT_TRUE(Write(**sink, testing::ToWrite(tensors)).ok());
  ASSERT_TRUE((*sink)->Commit().ok());
  auto source = OpenFileSource(path2, /*map=*/false);
  ASSERT_TRUE(source.ok());
  auto reader = SafetensorsReader::Open(*source);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto read = reader->Read("b");
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(BytesOf(*read, 5), AsString(tensors[1].bytes));
  ::unlink(path2.c_str());
}

TEST(SafetensorsRoundTripTest, MisalignedDataIsCopiedToAlignedMemory) {
  std::mt19937_64 rng(5);
  const std::vector<OwnedTensor> tensors = {RandomTensor(rng, "odd", DType::kU8, Shape{3}),
                                            RandomTensor(rng, "f", DType::kF32, Shape{2}),
                                            RandomTensor(rng, "d", DType::kF64, Shape{3})};
  const std::string file = WriteToString(tensors);
  auto reader = OpenBytes(file);
  ASSERT_TRUE(reader.ok()) << reader.status();
  const Buffer mapping = *reader->source().Map();
  auto odd = reader->Read("odd");
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(odd->view.data, mapping.data() + reader->Find("odd")->begin);  // U8: zero-copy
  ExpectRoundTrip(file, tensors, {});  // checks alignment and bytes of "f" and "d"
}

TEST(SafetensorsRoundTripTest, PlanFileMatchesWriteAndAllowsFillingInAnyOrder) {
  std::mt19937_64 rng(6);
  const std::vector<OwnedTensor> tensors = {RandomTensor(rng, "a", DType::kF32, Shape{4, 4}),
                                            RandomTensor(rng, "empty", DType::kI64, Shape{0}),
                                            RandomTensor(rng, "s", DType::kF16, Shape{}),
                                            RandomTensor(rng, "c", DType::kI8, Shape{9})};
  const Metadata metadata = {{"step", "7"}};
  const std::string written = WriteToString(tensors, metadata);

  std::vector<TensorSpec> specs;
  for (const OwnedTensor& t : tensors) specs.emplace_back(t.name, t.dtype, t.shape);
  absl::StatusOr<PlannedFile> plan = PlanFile(specs, metadata);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->total_size, written.size());
  EXPECT_EQ(written.substr(0, plan->header_bytes.size()), plan->header_bytes);
  ASSERT_EQ(plan->tensors.size(), tensors.size());

  MemorySink sink;
  for (size_t i = tensors.size(); i-- > 0;) {
    EXPECT_EQ(plan->tensors[i].name, tensors[i].name);
    EXPECT_EQ(plan->tensors[i].shape, tensors[i].shape);
    ASSERT_TRUE(sink.WriteAt(plan->tensors[i].begin, tensors[i].bytes).ok());
  }
  ASSERT_TRUE(sink.WriteAt(0, {reinterpret_cast<const std::byte*>(plan->header_bytes.data()),
                               plan->header_bytes.size()})
                  .ok());
  EXPECT_EQ(AsString(sink.bytes()), written);

  auto reader = OpenBytes(written);
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(reader->tensors(), plan->tensors);
}

void ExpectWriteRejected(const std::vector<WriteTensor>& tensors, const Metadata& metadata,
                         absl::string_view fragment) {
  MemorySink sink;
  absl::Status status = Write(sink, tensors, metadata);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(std::string(fragment)));
  EXPECT_EQ(sink.Size(), 0u);
}

TEST(SafetensorsRoundTripTest, WriterRejectsInvalidRequests) {
  const std::vector<std::byte> bytes(64);
  auto view = [&](Shape shape, std::vector<int64_t> strides = {}) {
    return TensorView{DType::kF32, std::move(shape), std::move(strides), bytes.data()};
  };
  ExpectWriteRejected({{"a", view({2})}, {"a", view({1})}}, {}, "'a' appears twice");
  ExpectWriteRejected({{"__metadata__", view({2})}}, {}, "reserved");
  ExpectWriteRejected({{"bad\xFF", view({2})}}, {}, "not valid UTF-8");
  ExpectWriteRejected({{"a", view({2, 3}, {1, 2})}}, {}, "not contiguous");
  ExpectWriteRejected({{"a", view({-1})}}, {}, "negative dimension");
  ExpectWriteRejected({{"a", view(Shape(std::vector<int64_t>(kMaxRank + 1, 1)))}}, {}, "rank 65");
  ExpectWriteRejected({{"a", TensorView{DType::kF32, Shape{2}, {}, nullptr}}}, {}, "no data");
  ExpectWriteRejected({{"a", view({2})}}, {{"k", "1"}, {"k", "2"}}, "'k' appears twice");
  ExpectWriteRejected({{"a", view({2})}}, {{"k", "\xC0\x80"}}, "not valid UTF-8");
  // A zero-size tensor may have no data.
  MemorySink sink;
  EXPECT_TRUE(Write(sink, {{"e", TensorView{DType::kF32, Shape{0, 5}, {}, nullptr}}}).ok());
}

class FailingSink final : public ByteSink {
 public:
  absl::Status Append(absl::Span<const std::byte> bytes) override {
    if (size_ > 0) return absl::UnavailableError("disk on fire");
    size_ += bytes.size();
    return absl::OkStatus();
  }
  absl::Status WriteAt(uint64_t, absl::Span<const std::byte>) override { return absl::OkStatus(); }
  uint64_t Size() const override { return size_; }
  absl::Status Commit() override { return absl::OkStatus(); }
  const std::string& name() const override { return name_; }

 private:
  std::string name_ = "out.safetensors";
  uint64_t size_ = 0;
};

TEST(SafetensorsRoundTripTest, SinkErrorsCarryContext) {
  std::mt19937_64 rng(7);
  FailingSink sink;
  absl::Status status = Write(sink, {RandomTensor(rng, "w", DType::kF32, Shape{2}).ToWrite()});
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "writing out.safetensors: tensor 'w': disk on fire");
}

TEST(SafetensorsRoundTripTest, FindAndReadByName) {
  std::mt19937_64 rng(8);
  auto reader = OpenBytes(WriteToString({RandomTensor(rng, "w", DType::kI32, Shape{2})}));
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(reader->Find("missing"), nullptr);
  absl::Status missing = reader->Read("missing").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.message(), "test.safetensors: no tensor 'missing'");

  TensorInfo forged = *reader->Find("w");
  forged.end += 4;
  absl::Status status = reader->Read(forged).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("tensor 'w'"));
  forged = TensorInfo{"far", DType::kU8, Shape{4}, 1000, 1004};
  EXPECT_EQ(reader->Read(forged).status().code(), absl::StatusCode::kInvalidArgument);

  SafetensorsReader copy = *reader;  // copies share the source
  EXPECT_TRUE(copy.Read("w").ok());
}

absl::Span<const std::byte> Bytes(absl::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

TEST(SafetensorsRoundTripTest, LooksLikeSafetensors) {
  std::mt19937_64 rng(9);
  const std::string file = WriteToString({RandomTensor(rng, "w", DType::kF32, Shape{2})});
  EXPECT_TRUE(LooksLikeSafetensors(Bytes(file).subspan(0, 16), file.size()));
  const std::string empty = WriteToString({});
  EXPECT_TRUE(LooksLikeSafetensors(Bytes(empty), empty.size()));
  EXPECT_FALSE(LooksLikeSafetensors(Bytes(file).subspan(0, 16), 20));  // header past the end
  EXPECT_FALSE(LooksLikeSafetensors(Bytes(file).subspan(0, 8), file.size()));
  EXPECT_FALSE(LooksLikeSafetensors(
      Bytes(std::string("PK\x03\x04\x14\0\0\0\x08\0\0\0\0\0\0\0", 16)), 1 << 20));
  EXPECT_FALSE(LooksLikeSafetensors(Bytes("\x89HDF\r\n\x1a\n\0\0\0\0\0\0\0\0"), 1 << 20));
  EXPECT_FALSE(LooksLikeSafetensors(Bytes(testing::RawFile("[]      ", "")), 16));
  EXPECT_FALSE(LooksLikeSafetensors(Bytes(testing::RawFile("{x}     ", "")), 16));
}

}  // namespace
}  // namespace ucp::formats::safetensors
