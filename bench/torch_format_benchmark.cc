// torch_format_benchmark: how fast the torch.save layer (formats/torch over formats/zip) parses,
// reads and writes a checkpoint file of more than 1 GiB. bench/run_format_bench.sh runs it next
// to `cat FILE > /dev/null` and `dd ... conv=fdatasync` of the same size and prints the ratios;
// results go to docs/benchmarks/.
//
// The file. On first use the binary writes, with ucp's own writer (SaveTorchFile),
//   <dir>/zero_pp_rank_0_mp_rank_00_optim_states.pt
// shaped like a DeepSpeed ZeRO-2 fp32 optimizer shard (deepspeed-formats.md §2.2, §3.2-3.4): dp
// rank 0 of dp_size 4 for a 24-layer decoder (hidden 1024, vocab 128256, tied embedding) trained
// with layer-wise LR decay, so it has 50 param groups (embedding; per layer one decay and one
// no-decay group; the final norm). Each group has a flat fp32 partition (`exp_avg`,
// `exp_avg_sq`, `single_partition_of_fp32_groups`) plus a 0-dim `step` tensor: 200 tensors from
// 4 bytes to one 131 MB embedding partition, 1.30 GB in all, and around them the nested dicts,
// lists, ints, floats and DeepSpeed objects of §2.2 (LossScaler, ZeroStageEnum,
// fragment_address). Tensor bytes are pseudo-random (never the zero page). A file already there
// is reused when it opens and has the expected storages and byte count.
//
// Flags (before Google Benchmark's own):
//   --ucp_bench_dir=DIR      where the file lives and BM_WriteFile writes; else $UCP_BENCH_DIR,
//                            else /tmp/ucp-bench. Keep it out of the repository.
//   --ucp_bench_regenerate   rewrite the file even if a valid one exists.
//   --ucp_bench_prepare_only create/check the file, warm the page cache, print one line of
//                            key=value facts (path, bytes, tensors, storages, pickle_bytes,
//                            resident_pct) to stdout and exit without benchmarking.
// Google Benchmark flags the script uses: --benchmark_filter=REGEX,
// --benchmark_repetitions=N, --benchmark_out=FILE --benchmark_out_format=json.
//
// Before any benchmark runs, main() reads the whole file once with 1 MiB read()s (what cat does)
// so the page cache is warm; the read benchmarks then report `resident_pct`, the share of the
// file's pages in the page cache (mincore), measured before their timed loop.
//
// Benchmarks (all in wall-clock time; the `GB` rate counter is 10^9 bytes per second):
//   BM_ParseMetadata     TorchFile::OpenPath + destruction: mmap, zip end records and central
//                        directory, every local header, data.pkl through the pickle VM, the
//                        storage index and its size checks. `bytes_read` is what one Open reads
//                        through a counting, unmapped source: the directory, local headers and
//                        data.pkl, no tensor bytes. File facts (bytes, tensors, pickle_bytes)
//                        are in the output's context as ucp_*.
//   BM_ReadAllTensors/mapped:0/threads:1
//                        The consumer's fast path: TorchFile::Open on an unmapped source, then
//                        every tensor is pread() (ByteSource::ReadAt at the record's data
//                        offset) straight into its destination. One copy, done by the kernel
//                        from the page cache, no per-page mapping cost. One reading thread, like
//                        cat: this is the figure compared with cat.
//   BM_ReadAllTensors/mapped:1/threads:1
//                        TorchFile::OpenPath (mmap) + TensorBytes (a zero-copy slice) + memcpy
//                        into the destination: the same copy, plus a page fault per fault-around
//                        window of the fresh mapping.
//   BM_ReadAllTensors/mapped:0/threads:2
//                        The fast path with tensors handed out to 2 ThreadPool workers.
//                        All: destinations are one pre-allocated, pre-faulted arena (as when
//                        loading into tensors that already exist), allocated outside the timed
//                        loop; bytes counted are the tensors' bytes (1,300,936,904 of the
//                        file's 1,301,013,479; the rest is pickle and zip headers); at least 1 s
//                        of iterations per run.
//   BM_WriteFile         SaveTorchFile of the same tree from memory to <dir>/
//                        write_benchmark_output.pt: pickle, zip records with CRC-32s, a temp file,
//                        fsync, rename, directory fsync. The output is in the same directory as
//                        the input, so on the same disk and file system. The file is deleted
//                        after each iteration, outside the timed region. Bytes = file size.
//                        One untimed write comes first: on the benchmark VM (virtio-balloon free
//                        page reporting) the first write after idle, dd's too, is several times
//                        slower than the next, presumably while the host backs pages again;
//                        the timed writes reuse the pages it frees, and run_format_bench.sh gives
//                        dd the same warm-up. `cold_GBps` is the untimed write's rate.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/format_bench_shard.h"
#include "benchmark/benchmark.h"
#include "formats/base/byte_source.h"
#include "formats/base/status.h"
#include "formats/base/thread_pool.h"
#include "formats/torch/pickle_tree_check.h"
#include "formats/torch/torch_file.h"
#include "formats/torch/torch_writer.h"

namespace ucp::bench {
namespace {

namespace ft = ::ucp::formats::torch;
using ft::StorageRef;
using ft::TensorRef;
using ft::Value;
using ft::ValueArena;

constexpr char kFileName[] = "zero_pp_rank_0_mp_rank_00_optim_states.pt";

struct Options {
  std::string dir;
  bool regenerate = false;
  bool prepare_only = false;
} flags;  // set once by ParseOwnFlags

std::string InputPath() { return flags.dir + "/" + kFileName; }

// ---- File preparation and page-cache facts. --------------------------------------------------

// OK when `path` opens and holds the shard's storages: per group step, exp_avg, exp_avg_sq and
// the fp32 partition.
absl::Status CheckExisting(const std::string& path) {
  UCP_ASSIGN_OR_RETURN(ft::TorchFile file, ft::TorchFile::OpenPath(path));
  const std::vector<Group> groups = PlanGroups();
  uint64_t want_bytes = 0;
  for (const Group& g : groups) want_bytes += 4 * (1 + 3 * static_cast<uint64_t>(g.partition));
  uint64_t bytes = 0;
  for (const StorageRef* s : file.storages()) bytes += static_cast<uint64_t>(s->numel) * 4;
  if (file.storages().size() != 4 * groups.size() || bytes != want_bytes) {
    return absl::FailedPreconditionError(absl::StrCat(path, " holds ", file.storages().size(),
                                                      " storages of ", bytes,
                                                      " bytes, not the benchmark's shard"));
  }
  return absl::OkStatus();
}

absl::Status PrepareFile() {
  if (::mkdir(flags.dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoToStatus(errno, absl::StrCat("creating ", flags.dir));
  }
  const std::string path = InputPath();
  if (!flags.regenerate) {
    absl::Status existing = CheckExisting(path);
    if (existing.ok()) return existing;
    std::fprintf(stderr, "generating %s (%s)\n", path.c_str(),
                 std::string(existing.message()).c_str());
  }
  return ft::SaveTorchFile(path, *InMemoryShard().root);
}

uint64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// Reads the whole file through a 1 MiB buffer, as `cat FILE > /dev/null` does.
absl::Status WarmPageCache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("opening ", path));
  std::vector<char> buf(size_t{1} << 20);
  ssize_t n;
  while ((n = ::read(fd, buf.data(), buf.size())) > 0 || (n < 0 && errno == EINTR)) {
  }
  ::close(fd);
  return n < 0 ? ErrnoToStatus(errno, absl::StrCat("reading ", path)) : absl::OkStatus();
}

// Percentage of the file's pages that are in the page cache (mincore), or -1 on error.
double ResidentPercent(const std::string& path) {
  const uint64_t size = FileSize(path);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || size == 0) return -1;
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return -1;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((size + page - 1) / page);
  double pct = -1;
  if (::mincore(p, size, vec.data()) == 0) {
    const auto resident =
        std::count_if(vec.begin(), vec.end(), [](unsigned char c) { return c & 1; });
    pct = 100.0 * static_cast<double>(resident) / static_cast<double>(vec.size());
  }
  ::munmap(p, size);
  return pct;
}

// A ByteSource that counts the bytes read through it (never mapped, so every read is counted).
class CountingSource final : public ByteSource {
 public:
  explicit CountingSource(std::shared_ptr<ByteSource> base) : base_(std::move(base)) {}
  uint64_t Size() const override { return base_->Size(); }
  absl::Status ReadAt(uint64_t offset, absl::Span<std::byte> out) const override {
    bytes_read_ += out.size();
    return base_->ReadAt(offset, out);
  }
  const std::string& name() const override { return base_->name(); }
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  std::shared_ptr<ByteSource> base_;
  mutable std::atomic<uint64_t> bytes_read_{0};
};

// Distinct tensors of the tree in pre-order.
std::vector<const TensorRef*> Tensors(const Value& root) {
  std::vector<const TensorRef*> out;
  absl::flat_hash_set<const Value*> seen;
  std::vector<const Value*> stack{&root};
  while (!stack.empty()) {
    const Value* v = stack.back();
    stack.pop_back();
    if (!seen.insert(v).second) continue;
    if (v->is(ft::ValueKind::kTensor)) out.push_back(&v->tensor());
    const size_t first_child = stack.size();
    ft::ForEachChild(*v, [&](const Value* c) { stack.push_back(c); });
    std::reverse(stack.begin() + static_cast<std::ptrdiff_t>(first_child), stack.end());
  }
  return out;
}

uint64_t TensorByteCount(const TensorRef& t) {
  return static_cast<uint64_t>(t.NumElements()) * static_cast<uint64_t>(DTypeSize(t.dtype));
}

// Copies `t` into `out` (exactly its bytes): pread from the record for contiguous tensors on an
// unmapped source; TensorBytes (zero-copy slice of the mapping, or a gather) + memcpy otherwise.
absl::Status ReadTensorInto(const ft::TorchFile& file, const TensorRef& t,
                            absl::Span<std::byte> out) {
  if (out.empty()) return absl::OkStatus();
  if (!file.zip().source().Map() && t.IsContiguous()) {
    UCP_ASSIGN_OR_RETURN(const formats::zip::ZipEntry* e, file.StorageEntry(*t.storage));
    return file.zip().source().ReadAt(
        e->data_offset + static_cast<uint64_t>(t.storage_offset) * DTypeSize(t.dtype), out);
  }
  UCP_ASSIGN_OR_RETURN(Buffer bytes, file.TensorBytes(t));
  std::memcpy(out.data(), bytes.data(), out.size());
  return absl::OkStatus();
}

void SetRate(benchmark::State& state, uint64_t bytes_per_iteration) {
  const double total =
      static_cast<double>(bytes_per_iteration) * static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(total));
  state.counters["GB"] =
      benchmark::Counter(total / 1e9, benchmark::Counter::kIsRate);  // shown as GB=x/s
}

// ---- Benchmarks. --------------------------------------------------------------------------------

void BM_ParseMetadata(benchmark::State& state) {
  const std::string path = InputPath();
  absl::StatusOr<std::shared_ptr<ByteSource>> raw = OpenFileSource(path, /*map=*/false);
  if (!raw.ok()) return state.SkipWithError(std::string(raw.status().message()).c_str());
  auto counting = std::make_shared<CountingSource>(*raw);
  absl::StatusOr<ft::TorchFile> probe = ft::TorchFile::Open(counting);
  if (!probe.ok()) return state.SkipWithError(std::string(probe.status().message()).c_str());
  for (auto _ : state) {
    absl::StatusOr<ft::TorchFile> file = ft::TorchFile::OpenPath(path);
    if (!file.ok()) return state.SkipWithError(std::string(file.status().message()).c_str());
    benchmark::DoNotOptimize(file->storages().data());
  }
  state.counters["bytes_read"] = static_cast<double>(counting->bytes_read());
}

void BM_ReadAllTensors(benchmark::State& state) {
  const bool mapped = state.range(0) != 0;
  const int threads = static_cast<int>(state.range(1));
  const std::string path = InputPath();
  // Destination layout: every tensor at a 64-byte aligned offset of one pre-faulted arena.
  std::vector<uint64_t> offsets;
  uint64_t arena_bytes = 0;
  uint64_t tensor_bytes = 0;
  {
    absl::StatusOr<ft::TorchFile> file = ft::TorchFile::OpenPath(path);
    if (!file.ok()) return state.SkipWithError(std::string(file.status().message()).c_str());
    for (const TensorRef* t : Tensors(file->root())) {
      offsets.push_back(arena_bytes);
      arena_bytes += (TensorByteCount(*t) + 63) / 64 * 64;
      tensor_bytes += TensorByteCount(*t);
    }
  }
  std::vector<std::byte> arena(arena_bytes, std::byte{1});
  state.counters["resident_pct"] = ResidentPercent(path);
  ThreadPool pool(threads);
  for (auto _ : state) {
    absl::StatusOr<std::shared_ptr<ByteSource>> source = OpenFileSource(path, mapped);
    if (!source.ok()) return state.SkipWithError(std::string(source.status().message()).c_str());
    absl::StatusOr<ft::TorchFile> file = ft::TorchFile::Open(*std::move(source));
    if (!file.ok()) return state.SkipWithError(std::string(file.status().message()).c_str());
    const std::vector<const TensorRef*> tensors = Tensors(file->root());
    if (tensors.size() != offsets.size()) return state.SkipWithError("tensor count changed");
    // Workers take the next tensor until none is left; the first error wins.
    std::atomic<size_t> next{0};
    std::vector<absl::Status> errors(threads);
    for (int w = 0; w < threads; ++w) {
      pool.Schedule([&, w] {
        for (size_t i; errors[w].ok() && (i = next++) < tensors.size();) {
          absl::Span<std::byte> out(arena.data() + offsets[i], TensorByteCount(*tensors[i]));
          errors[w] = ReadTensorInto(*file, *tensors[i], out);
        }
      });
    }
    pool.Wait();
    for (const absl::Status& error : errors) {
      if (!error.ok()) return state.SkipWithError(std::string(error.message()).c_str());
    }
    benchmark::ClobberMemory();
  }
  SetRate(state, tensor_bytes);
}

void BM_WriteFile(benchmark::State& state) {
  const Shard& shard = InMemoryShard();
  const std::string out = flags.dir + "/write_benchmark_output.pt";
  ::unlink(out.c_str());
  // Untimed first write (see the file comment); its rate is reported as `cold_GBps`.
  const auto cold_start = std::chrono::steady_clock::now();
  absl::Status cold = ft::SaveTorchFile(out, *shard.root);
  const std::chrono::duration<double> cold_seconds = std::chrono::steady_clock::now() - cold_start;
  if (!cold.ok()) return state.SkipWithError(std::string(cold.message()).c_str());
  const uint64_t file_bytes = FileSize(out);
  ::unlink(out.c_str());
  for (auto _ : state) {
    absl::Status status = ft::SaveTorchFile(out, *shard.root);
    if (!status.ok()) return state.SkipWithError(std::string(status.message()).c_str());
    state.PauseTiming();
    ::unlink(out.c_str());
    state.ResumeTiming();
  }
  SetRate(state, file_bytes);
  state.counters["cold_GBps"] = static_cast<double>(file_bytes) / cold_seconds.count() / 1e9;
}

BENCHMARK(BM_ParseMetadata)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ReadAllTensors)
    ->ArgNames({"mapped", "threads"})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Args({0, 2})
    ->MinTime(1.0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_WriteFile)->Unit(benchmark::kMillisecond)->UseRealTime();

// Removes this binary's own flags from argv (Google Benchmark rejects unknown ones).
void ParseOwnFlags(int* argc, char** argv) {
  const char* env = std::getenv("UCP_BENCH_DIR");
  flags.dir = env != nullptr && *env != '\0' ? env : "/tmp/ucp-bench";
  int kept = 1;
  for (int i = 1; i < *argc; ++i) {
    const absl::string_view arg = argv[i];
    if (absl::string_view prefix = "--ucp_bench_dir="; arg.substr(0, prefix.size()) == prefix) {
      flags.dir = std::string(arg.substr(prefix.size()));
    } else if (arg == "--ucp_bench_regenerate") {
      flags.regenerate = true;
    } else if (arg == "--ucp_bench_prepare_only") {
      flags.prepare_only = true;
    } else {
      argv[kept++] = argv[i];
    }
  }
  *argc = kept;
}

int Main(int argc, char** argv) {
  ParseOwnFlags(&argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  const std::string path = InputPath();
  absl::Status status = PrepareFile();
  if (status.ok()) status = WarmPageCache(path);
  absl::StatusOr<ft::TorchFile> file = status.ok() ? ft::TorchFile::OpenPath(path) : status;
  if (!file.ok()) {
    std::fprintf(stderr, "torch_format_benchmark: %s\n", file.status().ToString().c_str());
    return 1;
  }
  const std::vector<std::pair<std::string, std::string>> facts = {
      {"path", path},
      {"bytes", absl::StrCat(FileSize(path))},
      {"tensors", absl::StrCat(Tensors(file->root()).size())},
      {"storages", absl::StrCat(file->storages().size())},
      {"pickle_bytes", absl::StrCat(file->zip().Find(file->archive_root() + "/data.pkl")->size)},
      {"resident_pct", absl::StrFormat("%.1f", ResidentPercent(path))},
  };
  std::string line;
  for (const auto& [key, value] : facts) {
    benchmark::AddCustomContext(absl::StrCat("ucp_", key), value);
    absl::StrAppend(&line, line.empty() ? "" : " ", key, "=", value);
  }
  if (flags.prepare_only) {
    std::printf("%s\n", line.c_str());
    return 0;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace
}  // namespace ucp::bench

int main(int argc, char** argv) { return ucp::bench::Main(argc, argv); }
