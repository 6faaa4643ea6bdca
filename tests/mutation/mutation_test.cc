// Mutation test: 220,000 deterministic random damages (mutator.h: bit flips, random bytes,
// truncations, splices, zeroed, inserted, deleted and copied ranges, targeted hits on the zip
// central directory, data.pkl, the safetensors JSON header and HDF5 metadata) of real files of
// each format, each walked like a converter would (read_all.h: open, walk the tree, read every
// tensor's bytes, Verify). Only statuses are allowed: no crash, no sanitizer report, no leak, and
// only the error codes a damaged file may give (DataLoss, InvalidArgument, Unimplemented), with
// a message naming the input. Run it under the asan preset.
//
// Seeds and counts: torch, 80,000 mutants of six DeepSpeed fixture files (universal fragment and
// scalar, bf16 model states, ZeRO-3 model and optimizer states, an AutoEP expert); safetensors,
// 100,000 of four files made here with the project's writer; HDF5, 40,000 of two files made here
// with H5Writer (mutated copies go to disk). A disabled survey covers h5py-style HDF5 files.
//
// A crash prints the mutant ("mutation test crashed on: #17 ..."). To replay one mutant:
//   UCP_MUTANT=17 [UCP_MUTANT_DUMP=/tmp/m.bin] ctest -R Mutation...
// UCP_MUTATION_FORK=1 reads each HDF5 mutant in a child process (20 s alarm), so every mutant
// that crashes or hangs libhdf5 is listed instead of the first one ending the run.
#include <hdf5.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/base/byte_sink.h"
#include "formats/base/byte_source.h"
#include "formats/base/scratch_dir_testutil.h"
#include "formats/hdf5/h5_reader.h"
#include "formats/hdf5/h5_writer.h"
#include "formats/safetensors/safetensors_writer.h"
#include "formats/zip/zip_reader.h"
#include "gtest/gtest.h"
#include "tests/hostile/read_all.h"
#include "tests/mutation/mutator.h"

// LeakSanitizer (asan preset): libhdf5 1.10.8 leaks metadata-cache entries when it rejects damaged
// metadata (formats/hdf5/lsan_suppressions.txt: H5O_protect, plus blocks its free lists
// recycled). libhdf5 has no frame pointers, so ASan's fast unwinder stops at its first frame and
// only the module can be matched. ucp's side is checked instead: no HDF5 id stays open.
extern "C" const char* __lsan_default_suppressions() { return "leak:libhdf5\n"; }

namespace ucp::testing {
namespace {

// Each shard is one ctest test (they run in parallel). Under the asan preset on the 2-core dev
// machine a torch shard takes 5-9 s, a safetensors shard 2-3 s, an HDF5 shard 11-22 s, and
// `ctest -j2` runs all of them in 37-61 s.
constexpr int64_t kTorchShards = 4;
constexpr int64_t kTorchMutantsPerShard = 20000;
constexpr int64_t kSafetensorsShards = 2;
constexpr int64_t kSafetensorsMutantsPerShard = 50000;
constexpr int64_t kHdf5Shards = 4;
constexpr int64_t kHdf5MutantsPerShard = 10000;
// HDF5 datasets that claim more than this are not read (H5Reader allocates and fills the
// declared size once the file's storage accounts for it: up to kMaxFillBytes unbacked, and
// allocated chunks up to 32768x their stored bytes through zstd); they are counted and printed.
constexpr int64_t kMaxHdf5ReadBytes = int64_t{64} << 20;

// ---- Crash breadcrumb: the mutant being read, printed if the process dies on a signal. ----

char current_mutant[1024] = "";

extern "C" void PrintMutantAndDie(int signal_number) {
  static const char kPrefix[] = "\nmutation test crashed on: ";
  if (current_mutant[0] != '\0') {
    ssize_t ignored = ::write(STDERR_FILENO, kPrefix, sizeof(kPrefix) - 1);
    ignored = ::write(STDERR_FILENO, current_mutant, std::strlen(current_mutant));
    ignored = ::write(STDERR_FILENO, "\n", 1);
    (void)ignored;
  }
  std::signal(signal_number, SIG_DFL);
  std::raise(signal_number);
}

void SetBreadcrumb(const std::string& description) {
  static bool installed = [] {
    for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) std::signal(s, PrintMutantAndDie);
    return true;
  }();
  (void)installed;
  std::snprintf(current_mutant, sizeof(current_mutant), "%s", description.c_str());
}

// ---- Sources ----

// Hides Map(), so readers take their ReadAt paths (heap copies, chunked CRC).
class UnmappedSource final : public ByteSource {
 public:
  explicit UnmappedSource(std::shared_ptr<ByteSource> inner) : inner_(std::move(inner)) {}
  uint64_t Size() const override { return inner_->Size(); }
  absl::Status ReadAt(uint64_t offset, absl::Span<std::byte> out) const override {
    return inner_->ReadAt(offset, out);
  }
  const std::string& name() const override { return inner_->name(); }

 private:
  std::shared_ptr<ByteSource> inner_;
};

std::shared_ptr<const ByteSource> SourceOf(const std::string& bytes, const std::string& name,
                                           bool mapped) {
  std::shared_ptr<ByteSource> memory = MemorySource(Buffer::CopyOf(absl::string_view(bytes)), name);
  if (mapped) return memory;
  return std::make_shared<UnmappedSource>(std::move(memory));
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteFile(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::filesystem::path SourceDir() {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return root != nullptr ? root : ".";
}

// ---- Torch seeds ----

MutationSeed TorchSeed(const std::string& relative) {
  MutationSeed seed{std::filesystem::path(relative).filename().string(),
                    ReadFile(SourceDir() / "fixtures" / "deepspeed" / relative),
                    {}};
  auto zip = formats::zip::ZipReader::Open(SourceOf(seed.bytes, seed.name, true));
  EXPECT_TRUE(zip.ok()) << relative << ": " << zip.status();
  if (!zip.ok()) return seed;
  uint64_t payload_end = 0;
  for (const formats::zip::ZipEntry& e : zip->entries()) {
    payload_end = std::max(payload_end, e.data_offset + e.size);
    if (e.name.ends_with("/data.pkl")) seed.hot.emplace_back(e.data_offset, e.data_offset + e.size);
  }
  // The central directory and end records: from the first central header to the end.
  const size_t central = seed.bytes.find("PK\x01\x02", payload_end);
  if (central != std::string::npos) seed.hot.emplace_back(central, seed.bytes.size());
  return seed;
}

std::vector<MutationSeed> TorchSeeds() {
  return {
      TorchSeed("s1_bf16opt_dp4/checkpoint/global_step5_universal/zero/ln_f.bias/fp32.pt"),
      TorchSeed("s1_bf16opt_dp4/checkpoint/global_step5_universal/zero/ln_f.bias/step.pt"),
      TorchSeed("s1_bf16opt_dp4/checkpoint/global_step5/mp_rank_00_model_states.pt"),
      TorchSeed("s3_fp32_dp4/checkpoint/global_step5/zero_pp_rank_0_mp_rank_00_model_states.pt"),
      TorchSeed("s3_fp32_dp4/checkpoint/global_step5/zero_pp_rank_0_mp_rank_00_optim_states.pt"),
      TorchSeed("autoep_mixtral_s2_fp32_dp4_ep2/checkpoint/global_step5/"
                "layer_0_expert_0_mp_rank_00_model_states.pt"),
  };
}

// ---- safetensors seeds (the project's writer) ----

struct TensorSpec {
  std::string name;
  DType dtype;
  Shape shape;
};

MutationSeed SafetensorsSeed(const std::string& name, const std::vector<TensorSpec>& specs,
                             const std::vector<std::pair<std::string, std::string>>& metadata) {
  std::vector<std::vector<std::byte>> data;
  std::vector<formats::safetensors::WriteTensor> tensors;
  for (const TensorSpec& spec : specs) {
    std::vector<std::byte>& bytes =
        data.emplace_back(static_cast<size_t>(*spec.shape.NumBytes(spec.dtype)));
    for (size_t i = 0; i < bytes.size(); ++i)
      bytes[i] = static_cast<std::byte>((i * 37 + 11) & 0xFF);
    tensors.push_back({spec.name, TensorView{spec.dtype, spec.shape, {}, bytes.data()}});
  }
  MemorySink sink(name);
  absl::Status written = formats::safetensors::Write(sink, tensors, metadata);
  EXPECT_TRUE(written.ok()) << written;
  MutationSeed seed{
      name,
      std::string(reinterpret_cast<const char*>(sink.bytes().data()), sink.bytes().size()),
      {}};
  uint64_t header_length = 0;
  for (int i = 7; i >= 0 && seed.bytes.size() >= 8; --i) {
    header_length = (header_length << 8) | static_cast<unsigned char>(seed.bytes[i]);
  }
  seed.hot.emplace_back(0, 8 + header_length);  // the length field and the JSON header
  return seed;
}

std::vector<MutationSeed> SafetensorsSeeds() {
  std::vector<TensorSpec> many;
  for (int i = 0; i < 24; ++i) {
    many.push_back({absl::StrCat("layers.", i, i % 2 ? ".bias" : ".weight"), DType::kF32,
                    i % 2 ? Shape{3} : Shape{3, 2}});
  }
  return {
      SafetensorsSeed("mixed.safetensors",
                      {{"w", DType::kF32, {3, 4}},
                       {"b", DType::kBF16, {8}},
                       {"idx", DType::kI64, {2, 2}},
                       {"mask", DType::kBool, {5}},
                       {"scale", DType::kF16, {}},
                       {"none", DType::kU8, {0}}},
                      {{"format", "pt"}, {"step", "5"}}),
      SafetensorsSeed("single.safetensors", {{"x", DType::kF64, {16}}}, {}),
      SafetensorsSeed("many.safetensors", many, {{"note", "twenty-four small tensors"}}),
      SafetensorsSeed("small_types.safetensors",
                      {{"a", DType::kF8E4M3, {7}},
                       {"b", DType::kF8E5M2, {3}},
                       {"c", DType::kI8, {9}},
                       {"d", DType::kI16, {2}},
                       {"e", DType::kI32, {3}}},
                      {}),
  };
}

// ---- HDF5 seeds (the project's writer; hot ranges are everything but chunk data) ----

// [begin, end) of every dataset's stored data (chunks, or the contiguous block).
std::vector<std::pair<uint64_t, uint64_t>> DataRanges(const std::string& path) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  H5E_auto2_t old_func = nullptr;
  void* old_data = nullptr;
  H5Eget_auto2(H5E_DEFAULT, &old_func, &old_data);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // a dataset without chunks is not an error here
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  EXPECT_GE(file, 0) << path;
  if (file < 0) return ranges;
  struct Visit {
    hid_t file;
    std::vector<std::pair<uint64_t, uint64_t>>* ranges;
  } visit{file, &ranges};
  auto callback = [](hid_t, const char* name, const H5O_info_t* info, void* data) -> herr_t {
    if (info->type != H5O_TYPE_DATASET) return 0;
    auto* v = static_cast<Visit*>(data);
    hid_t dataset = H5Dopen2(v->file, name, H5P_DEFAULT);
    hid_t space = H5Dget_space(dataset);
    hsize_t chunks = 0;
    if (H5Dget_num_chunks(dataset, space, &chunks) >= 0 && chunks > 0) {
      for (hsize_t i = 0; i < chunks; ++i) {
        hsize_t offset[H5S_MAX_RANK];
        unsigned mask = 0;
        haddr_t address = 0;
        hsize_t size = 0;
        if (H5Dget_chunk_info(dataset, space, i, offset, &mask, &address, &size) >= 0) {
          v->ranges->emplace_back(address, address + size);
        }
      }
    } else if (haddr_t address = H5Dget_offset(dataset); address != HADDR_UNDEF) {
      v->ranges->emplace_back(address, address + H5Dget_storage_size(dataset));
    }
    H5Eclear2(H5E_DEFAULT);
    H5Sclose(space);
    H5Dclose(dataset);
    return 0;
  };
  H5Ovisit2(file, H5_INDEX_NAME, H5_ITER_INC, callback, &visit, H5O_INFO_BASIC);
  H5Fclose(file);
  H5Eset_auto2(H5E_DEFAULT, old_func, old_data);
  std::sort(ranges.begin(), ranges.end());
  return ranges;
}

template <typename T>
TensorView ViewOf(DType dtype, Shape shape, const std::vector<T>& values) {
  return TensorView{dtype, std::move(shape), {}, reinterpret_cast<const std::byte*>(values.data())};
}

MutationSeed Hdf5Seed(const std::filesystem::path& dir, const std::string& name,
                      formats::hdf5::WriteOptions options, bool with_attributes) {
  using formats::hdf5::H5Writer;
  const std::string path = (dir / name).string();
  std::vector<float> weight(16 * 16);
  for (size_t i = 0; i < weight.size(); ++i) weight[i] = static_cast<float>(i) * 0.25f;
  std::vector<uint16_t> bias(16, 0x3F80);
  std::vector<int64_t> step{5};
  std::vector<uint8_t> mask{1, 0, 1, 1, 0, 0, 1, 0, 1, 1};
  {
    absl::StatusOr<H5Writer> writer = H5Writer::Create(path, options);
    EXPECT_TRUE(writer.ok()) << writer.status();
    if (!writer.ok()) return {};
    EXPECT_TRUE(writer->WriteTensor("layers/0/weight", ViewOf(DType::kF32, {16, 16}, weight)).ok());
    EXPECT_TRUE(writer->WriteTensor("layers/0/bias", ViewOf(DType::kBF16, {16}, bias)).ok());
    EXPECT_TRUE(writer->WriteTensor("step", ViewOf(DType::kI64, {}, step)).ok());
    EXPECT_TRUE(writer->WriteTensor("mask", ViewOf(DType::kBool, {10}, mask)).ok());
    if (with_attributes) {
      EXPECT_TRUE(writer->SetAttribute("/", "step", int64_t{5}).ok());
      EXPECT_TRUE(writer->SetAttribute("/", "lr", 0.001).ok());
      EXPECT_TRUE(writer->SetAttribute("/", "model", std::string("tiny-gpt")).ok());
      EXPECT_TRUE(writer->SetAttribute("layers", "shape", std::vector<int64_t>{16, 16}).ok());
      EXPECT_TRUE(writer->SetAttribute("layers/0/weight", "tp_dim", int64_t{0}).ok());
    }
    EXPECT_TRUE(writer->Commit().ok());
  }
  MutationSeed seed{name, ReadFile(path), {}};
  uint64_t begin = 0;
  for (const auto& [data_begin, data_end] : DataRanges(path)) {
    if (data_begin > begin) seed.hot.emplace_back(begin, data_begin);
    begin = std::max(begin, data_end);
  }
  if (begin < seed.bytes.size()) seed.hot.emplace_back(begin, seed.bytes.size());
  return seed;
}

// ---- Running mutants ----

struct Tally {
  int64_t mutants = 0;
  int64_t accepted = 0;  // read end to end without error (the damage was harmless)
  int64_t skipped_datasets = 0;
  std::map<std::string, int64_t> by_stage_and_code;
  int64_t problems = 0;
  std::vector<std::string> examples;  // the first problems

  void Problem(const std::string& what) {
    if (++problems <= 10) examples.push_back(what);
  }
};

bool AllowedCode(absl::StatusCode code) {
  return code == absl::StatusCode::kDataLoss || code == absl::StatusCode::kInvalidArgument ||
         code == absl::StatusCode::kUnimplemented;
}

void Check(const Mutant& mutant, const Outcome& outcome, const std::string& input_name,
           Tally& tally) {
  ++tally.mutants;
  tally.skipped_datasets += outcome.skipped;
  if (outcome.status.ok()) {
    ++tally.accepted;
    return;
  }
  ++tally.by_stage_and_code[absl::StrCat(StageName(outcome.stage), " ",
                                         absl::StatusCodeToString(outcome.status.code()))];
  if (!AllowedCode(outcome.status.code())) {
    tally.Problem(
        absl::StrCat(mutant.description, ": unexpected code: ", outcome.status.ToString()));
  } else if (outcome.status.message().find(input_name) == absl::string_view::npos) {
    tally.Problem(absl::StrCat(mutant.description, ": message does not name '", input_name,
                               "': ", outcome.status.ToString()));
  }
}

// The index range [first, first + count) of a shard, or just UCP_MUTANT when set (and inside).
std::pair<int64_t, int64_t> Range(int64_t first, int64_t count) {
  const char* only = std::getenv("UCP_MUTANT");
  if (only == nullptr) return {first, first + count};
  const int64_t index = std::strtoll(only, nullptr, 10);
  if (index < first || index >= first + count) return {0, 0};
  return {index, index + 1};
}

void MaybeDump(const Mutant& mutant) {
  const char* dump = std::getenv("UCP_MUTANT_DUMP");
  if (dump != nullptr && std::getenv("UCP_MUTANT") != nullptr) WriteFile(dump, mutant.bytes);
}

void Report(const std::string& what, const Tally& tally) {
  std::string line =
      absl::StrCat(what, ": ", tally.mutants, " mutants, ", tally.accepted, " read cleanly");
  if (tally.skipped_datasets > 0) {
    absl::StrAppend(&line, ", ", tally.skipped_datasets, " datasets over ", kMaxHdf5ReadBytes,
                    " bytes not read");
  }
  for (const auto& [key, n] : tally.by_stage_and_code) absl::StrAppend(&line, "; ", key, " ", n);
  std::printf("%s\n", line.c_str());
  EXPECT_EQ(tally.problems, 0) << absl::StrJoin(tally.examples, "\n");
}

void RunInMemory(const std::string& what, const Mutator& mutator, int64_t first, int64_t count,
                 const std::string& extension,
                 Outcome (*read_all)(std::shared_ptr<const ByteSource>)) {
  Tally tally;
  const std::string input_name = "mutant" + extension;
  auto [begin, end] = Range(first, count);
  for (int64_t i = begin; i < end; ++i) {
    const Mutant mutant = mutator.Make(i);
    SetBreadcrumb(mutant.description);
    MaybeDump(mutant);
    Check(mutant, read_all(SourceOf(mutant.bytes, input_name, /*mapped=*/i % 2 == 0)), input_name,
          tally);
  }
  SetBreadcrumb("");
  Report(what, tally);
}

TEST(MutationTest, SeedsReadCleanly) {
  for (const MutationSeed& seed : TorchSeeds()) {
    Outcome outcome = ReadAllTorch(SourceOf(seed.bytes, seed.name, true));
    EXPECT_TRUE(outcome.status.ok()) << seed.name << ": " << outcome.status;
    EXPECT_GT(outcome.tensors, 0) << seed.name;
    EXPECT_EQ(seed.hot.size(), 2u) << seed.name;
  }
  for (const MutationSeed& seed : SafetensorsSeeds()) {
    Outcome outcome = ReadAllSafetensors(SourceOf(seed.bytes, seed.name, false));
    EXPECT_TRUE(outcome.status.ok()) << seed.name << ": " << outcome.status;
    EXPECT_GT(outcome.tensors, 0) << seed.name;
  }
}

class TorchMutationTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(TorchMutationTest, OnlyStatuses) {
  static const Mutator mutator(TorchSeeds(), 0x70C4);
  const int64_t shard = GetParam();
  RunInMemory(absl::StrCat("torch shard ", shard), mutator, shard * kTorchMutantsPerShard,
              kTorchMutantsPerShard, ".pt", &ReadAllTorch);
}
INSTANTIATE_TEST_SUITE_P(Shards, TorchMutationTest, ::testing::Range<int64_t>(0, kTorchShards));

class SafetensorsMutationTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(SafetensorsMutationTest, OnlyStatuses) {
  static const Mutator mutator(SafetensorsSeeds(), 0x5AFE);
  const int64_t shard = GetParam();
  RunInMemory(absl::StrCat("safetensors shard ", shard), mutator,
              shard * kSafetensorsMutantsPerShard, kSafetensorsMutantsPerShard, ".safetensors",
              &ReadAllSafetensors);
}
INSTANTIATE_TEST_SUITE_P(Shards, SafetensorsMutationTest,
                         ::testing::Range<int64_t>(0, kSafetensorsShards));

class Hdf5Test : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testutil::ScratchDir::Make(""); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

class Hdf5MutationTest : public Hdf5Test, public ::testing::WithParamInterface<int64_t> {};

// Reads mutants [first, first + count) of `mutator` from `dir`/mutant.h5.
// With `isolate` (or UCP_MUTATION_FORK set), each mutant is read in a child process.
void RunHdf5(const std::string& what, const Mutator& mutator, const std::filesystem::path& dir,
             int64_t first, int64_t count, bool isolate = false) {
  const std::string path = (dir / "mutant.h5").string();
  Tally tally;
  auto [begin, end] = Range(first, count);
  isolate = isolate || std::getenv("UCP_MUTATION_FORK") != nullptr;
  std::vector<std::string> crashes;
  std::map<std::string, int64_t> crash_stages;
  for (int64_t i = begin; i < end; ++i) {
    const Mutant mutant = mutator.Make(i);
    SetBreadcrumb(mutant.description);
    MaybeDump(mutant);
    WriteFile(path, mutant.bytes);
    if (!isolate) {
      Check(mutant, ReadAllHdf5(path, kMaxHdf5ReadBytes), "mutant.h5", tally);
      continue;
    }
    // Survey mode: each mutant in a child process, so every crashing one is listed. The child
    // first walks the stages one by one and reports each it got through on a pipe, so a crash is
    // attributed to H5Reader::Open, to Attributes() or to reading data.
    int stages[2];
    ASSERT_EQ(::pipe(stages), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(stages[0]);
      ::alarm(20);  // a hang is reported as signal 14 (SIGALRM)
      if (absl::StatusOr<formats::hdf5::H5Reader> reader = formats::hdf5::H5Reader::Open(path);
          reader.ok()) {
        ssize_t ignored = ::write(stages[1], "o", 1);
        (void)reader->Attributes("/");
        for (const formats::hdf5::DatasetInfo& info : reader->datasets()) {
          (void)reader->Attributes(info.path);
        }
        ignored = ::write(stages[1], "a", 1);
        (void)ignored;
      }
      Tally mine;
      Check(mutant, ReadAllHdf5(path, kMaxHdf5ReadBytes), "mutant.h5", mine);
      for (const std::string& problem : mine.examples)
        std::printf("problem: %s\n", problem.c_str());
      std::fflush(stdout);
      ::_exit(mine.problems == 0 ? 0 : 1);
    }
    ::close(stages[1]);
    int wait_status = 0;
    ::waitpid(child, &wait_status, 0);
    char reached[2] = {};
    const ssize_t got = ::read(stages[0], reached, sizeof(reached));
    ::close(stages[0]);
    ++tally.mutants;
    if (WIFSIGNALED(wait_status)) {
      const char* stage = got <= 0 ? "open" : got == 1 ? "attributes" : "data";
      ++crash_stages[stage];
      crashes.push_back(absl::StrCat(mutant.description, " (signal ", WTERMSIG(wait_status),
                                     ", in ", stage, ")"));
    } else if (WEXITSTATUS(wait_status) != 0) {
      tally.Problem(absl::StrCat(mutant.description, ": exit ", WEXITSTATUS(wait_status)));
    }
  }
  SetBreadcrumb("");
  for (const std::string& crash : crashes) std::printf("crashed: %s\n", crash.c_str());
  for (const auto& [stage, n] : crash_stages) {
    std::printf("crashed in %s: %lld\n", stage.c_str(), static_cast<long long>(n));
  }
  EXPECT_TRUE(crashes.empty()) << crashes.size() << " mutants crashed";
  EXPECT_EQ(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0) << "HDF5 ids left open by ucp";
  Report(what, tally);
}

TEST_P(Hdf5MutationTest, OnlyStatuses) {
  formats::hdf5::WriteOptions small_chunks;
  small_chunks.chunk_bytes = 256;  // the 1 KiB weight spans four chunks
  formats::hdf5::WriteOptions no_shuffle;
  no_shuffle.shuffle = false;
  no_shuffle.zstd_level = 1;
  std::vector<MutationSeed> seeds = {Hdf5Seed(dir_, "chunked.h5", small_chunks, true),
                                     Hdf5Seed(dir_, "plain.h5", no_shuffle, false)};
  for (const MutationSeed& seed : seeds) {
    ASSERT_FALSE(seed.bytes.empty());
    Outcome outcome = ReadAllHdf5((dir_ / seed.name).string());
    ASSERT_TRUE(outcome.status.ok()) << seed.name << ": " << outcome.status;
    ASSERT_EQ(outcome.tensors, 4) << seed.name;
  }
  const Mutator mutator(std::move(seeds), 0x4D5F);
  const int64_t shard = GetParam();
  RunHdf5(absl::StrCat("hdf5 shard ", shard), mutator, dir_, shard * kHdf5MutantsPerShard,
          kHdf5MutantsPerShard);
}
// A file laid out as h5py and HDF5's defaults write it (H5Writer does not): version-0 superblock,
// version-1 object headers without checksums, variable-length string attributes in the global
// heap, a contiguous and an unfiltered chunked dataset.
MutationSeed LegacyHdf5Seed(const std::filesystem::path& dir) {
  const std::string path = (dir / "legacy.h5").string();
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t vlen = H5Tcopy(H5T_C_S1);
  H5Tset_size(vlen, H5T_VARIABLE);
  hid_t scalar = H5Screate(H5S_SCALAR);
  auto string_attribute = [&](hid_t object, const char* name, const char* value) {
    hid_t attribute = H5Acreate2(object, name, vlen, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(attribute, vlen, &value);
    H5Aclose(attribute);
  };
  std::vector<float> weight(64);
  for (size_t i = 0; i < weight.size(); ++i) weight[i] = static_cast<float>(i);
  hsize_t weight_dims[2] = {8, 8};
  hid_t weight_space = H5Screate_simple(2, weight_dims, nullptr);
  hid_t w =
      H5Dcreate2(file, "w", H5T_IEEE_F32LE, weight_space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(w, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, weight.data());
  string_attribute(w, "units", "logits");
  std::vector<int64_t> steps{1, 2, 3, 4, 5, 6};
  hsize_t step_dims[1] = {6};
  hsize_t chunk[1] = {2};
  hid_t step_space = H5Screate_simple(1, step_dims, nullptr);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 1, chunk);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t b = H5Dcreate2(file, "grp/steps", H5T_STD_I64LE, step_space, lcpl, dcpl, H5P_DEFAULT);
  H5Dwrite(b, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, steps.data());
  string_attribute(file, "note", "written like h5py");
  for (hid_t id : {b, w}) H5Dclose(id);
  for (hid_t id : {dcpl, lcpl}) H5Pclose(id);
  for (hid_t id : {step_space, weight_space, scalar}) H5Sclose(id);
  H5Tclose(vlen);
  H5Fclose(file);
  MutationSeed seed{"legacy.h5", ReadFile(path), {}};
  uint64_t begin = 0;
  for (const auto& [data_begin, data_end] : DataRanges(path)) {
    if (data_begin > begin) seed.hot.emplace_back(begin, data_begin);
    begin = std::max(begin, data_end);
  }
  if (begin < seed.bytes.size()) seed.hot.emplace_back(begin, seed.bytes.size());
  return seed;
}

// libhdf5 1.10.8 is not hardened against damaged metadata that carries no checksum: on files
// laid out like h5py's, some mutants crash or hang it (formats/hdf5/README.md, "libhdf5
// itself"). Disabled, as it cannot pass; run it to list those mutants (each in a child process):
//   ucp_mutation_test --gtest_also_run_disabled_tests --gtest_filter='*Legacy*'
TEST_F(Hdf5Test, DISABLED_LegacyLayoutSurvey) {
  MutationSeed seed = LegacyHdf5Seed(dir_);
  Outcome outcome = ReadAllHdf5((dir_ / seed.name).string());
  ASSERT_TRUE(outcome.status.ok()) << outcome.status;
  ASSERT_EQ(outcome.tensors, 2);
  const Mutator mutator({std::move(seed)}, 0x1E6A);
  RunHdf5("hdf5 legacy layout", mutator, dir_, 0, 10000, /*isolate=*/true);
}

INSTANTIATE_TEST_SUITE_P(Shards, Hdf5MutationTest, ::testing::Range<int64_t>(0, kHdf5Shards));

}  // namespace
}  // namespace ucp::testing
