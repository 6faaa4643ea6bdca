#include "converters/execute/dist_share.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "converters/execute/byte_partition.h"
#include "formats/base/crc32.h"
#include "formats/base/status.h"
#include "formats/base/thread_pool.h"
#include "ucp/torch_frame.h"

namespace ucp::converters::execute {
namespace {

using plan::CopyOp;
using plan::Plan;
using plan::PlanFile;
using plan::Region;

// Regions of `file` sorted by offset (empty ones left out).
std::vector<int> RegionsByOffset(const PlanFile& file) {
  std::vector<int> order;
  for (size_t r = 0; r < file.regions.size(); ++r) {
    if (file.regions[r].size > 0) order.push_back(static_cast<int>(r));
  }
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return file.regions[a].offset < file.regions[b].offset; });
  return order;
}

// The segments of byte range `range` of its file: its intersections with the regions.
void SegmentsOf(const PlanFile& file, const std::vector<int>& regions, const ByteRange& range,
                std::vector<Segment>* out) {
  auto it = std::upper_bound(regions.begin(), regions.end(), range.begin,
                             [&](uint64_t at, int r) { return at < file.regions[r].offset; });
  if (it != regions.begin()) --it;
  for (; it != regions.end(); ++it) {
    const Region& region = file.regions[*it];
    if (region.offset >= range.end) break;
    const uint64_t begin = std::max(range.begin, region.offset);
    const uint64_t end = std::min(range.end, region.offset + region.size);
    if (begin < end) out->push_back({range.file, *it, begin, end - begin});
  }
}

struct Hasher {
  uint64_t h = 0xcbf29ce484222325ULL;
  void Bytes(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  }
  void U64(uint64_t v) { Bytes(&v, sizeof(v)); }
  void Str(const std::string& s) {
    U64(s.size());
    Bytes(s.data(), s.size());
  }
};

absl::Status WriteFrame(const PlanFile& file, const std::vector<uint32_t>& region_crcs,
                        const std::string& path, bool fsync, uint32_t* crc_out) {
  std::vector<std::tuple<uint64_t, uint64_t, uint32_t>> parts;  // offset, length, crc
  for (size_t r = 0; r < file.regions.size(); ++r) {
    parts.emplace_back(file.regions[r].offset, file.regions[r].size, region_crcs[r]);
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("opening ", path));
  absl::Status status;
  if (::ftruncate(fd, static_cast<off_t>(file.size)) != 0) {
    status = ErrnoToStatus(errno, absl::StrCat("sizing ", path));
  }
  if (status.ok() && file.frame) {
    absl::StatusOr<std::vector<ucp::FramePiece>> pieces =
        ucp::RenderTorchFrame(*file.frame, region_crcs);
    if (!pieces.ok()) status = pieces.status();
    for (size_t i = 0; status.ok() && i < pieces->size(); ++i) {
      const ucp::FramePiece& p = (*pieces)[i];
      for (size_t done = 0; status.ok() && done < p.bytes.size();) {
        const ssize_t n = ::pwrite(fd, p.bytes.data() + done, p.bytes.size() - done,
                                   static_cast<off_t>(p.offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) status = ErrnoToStatus(errno, absl::StrCat("writing ", path));
        if (n > 0) done += static_cast<size_t>(n);
      }
      parts.emplace_back(p.offset, p.bytes.size(), Crc32(p.bytes));
    }
  }
  if (status.ok() && fsync && ::fsync(fd) != 0) status = ErrnoToStatus(errno, "fsync " + path);
  ::close(fd);
  UCP_RETURN_IF_ERROR(status);
  std::sort(parts.begin(), parts.end());
  uint32_t crc = 0;
  uint64_t at = 0;
  for (const auto& [offset, length, part_crc] : parts) {
    if (length == 0) continue;
    if (offset != at) return absl::InternalError(absl::StrCat(path, ": nothing at byte ", at));
    crc = Crc32Combine(crc, part_crc, length);
    at += length;
  }
  if (at != file.size) return absl::InternalError(absl::StrCat(path, ": bytes end at ", at));
  *crc_out = crc;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<RankWork>> DivideWork(const Plan& plan, int world, uint64_t min_piece,
                                                 uint64_t batch_bytes) {
  if (world < 1) return absl::InvalidArgumentError(absl::StrCat("world size ", world));
  std::vector<uint64_t> sizes;
  std::vector<RankWork> work(world);
  int written = 0;
  for (size_t f = 0; f < plan.files.size(); ++f) {
    const bool writer = plan.files[f].writer != nullptr;
    sizes.push_back(writer ? 0 : plan.files[f].size);
    if (writer) work[written++ % world].written_files.push_back(static_cast<int>(f));
  }
  UCP_ASSIGN_OR_RETURN(std::vector<RankShare> shares, PartitionByBytes(sizes, world, min_piece));
  std::vector<std::vector<int>> regions(plan.files.size());
  for (size_t f = 0; f < plan.files.size(); ++f) regions[f] = RegionsByOffset(plan.files[f]);
  for (int r = 0; r < world; ++r) {
    std::vector<Segment> segments;
    for (const ByteRange& range : shares[r].ranges) {
      SegmentsOf(plan.files[range.file], regions[range.file], range, &segments);
    }
    uint64_t bytes = 0;
    for (const Segment& s : segments) bytes += s.length;
    work[r].bytes = bytes;
    // About 16 batches a rank (resume units), each at most batch_bytes.
    const uint64_t batch = std::clamp<uint64_t>(bytes / 16, std::min(min_piece, batch_bytes),
                                                std::max<uint64_t>(batch_bytes, 1));
    uint64_t in_batch = 0;
    for (const Segment& s : segments) {
      if (work[r].batches.empty() || in_batch >= batch) {
        work[r].batches.emplace_back();
        in_batch = 0;
      }
      work[r].batches.back().push_back(s);
      in_batch += s.length;
    }
  }
  return work;
}

Plan BatchPlan(const Plan& plan, absl::Span<const Segment> segments) {
  Plan out;
  out.info = plan.info;
  out.sources = plan.sources;
  int last_file = -1;
  for (const Segment& s : segments) {
    const PlanFile& file = plan.files[s.file];
    if (s.file != last_file) {
      PlanFile pf;
      pf.path = file.path;
      pf.role = file.role;
      pf.size = file.size;
      out.files.push_back(std::move(pf));
      last_file = s.file;
    }
    const Region& region = file.regions[s.region];
    Region piece{.offset = s.offset, .size = s.length, .ops = {}};
    auto it = std::upper_bound(region.ops.begin(), region.ops.end(), s.offset,
                               [](uint64_t at, const CopyOp& op) { return at < op.dest_offset; });
    if (it != region.ops.begin()) --it;
    const uint64_t end = s.offset + s.length;
    for (; it != region.ops.end() && it->dest_offset < end; ++it) {
      const uint64_t begin = std::max(s.offset, it->dest_offset);
      const uint64_t stop = std::min(end, it->dest_offset + it->length);
      if (begin >= stop) continue;
      piece.ops.push_back(
          CopyOp{it->source, it->source_offset + (begin - it->dest_offset), stop - begin, begin});
    }
    out.files.back().regions.push_back(std::move(piece));
  }
  return out;
}

uint64_t PlanKey(const Plan& plan, int world) {
  Hasher h;
  h.U64(static_cast<uint64_t>(world));
  for (const plan::PlanSource& s : plan.sources) {
    h.Str(s.path);
    h.U64(s.size);
  }
  for (const PlanFile& f : plan.files) {
    h.Str(f.path);
    h.U64(f.size);
    h.U64(static_cast<uint64_t>(f.role) | (f.writer ? 0x100 : 0) | (f.frame ? 0x200 : 0));
    if (f.frame) h.Str(f.frame->pickle);
    for (const Region& r : f.regions) {
      h.U64(r.offset);
      h.U64(r.size);
      for (const CopyOp& op : r.ops) {
        const uint64_t v[4] = {static_cast<uint64_t>(op.source), op.source_offset, op.length,
                               op.dest_offset};
        h.Bytes(v, sizeof(v));
      }
    }
  }
  return h.h;
}

uint64_t WorkKey(const RankWork& work) {
  Hasher h;
  h.U64(work.batches.size());
  for (const std::vector<Segment>& batch : work.batches) {
    h.U64(batch.size());
    for (const Segment& s : batch) {
      const uint64_t v[4] = {static_cast<uint64_t>(s.file), static_cast<uint64_t>(s.region),
                             s.offset, s.length};
      h.Bytes(v, sizeof(v));
    }
  }
  h.U64(work.written_files.size());
  for (int f : work.written_files) h.U64(static_cast<uint64_t>(f));
  return h.h;
}

std::string EncodeReport(const RankReport& report) {
  std::string out;
  auto put = [&out](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  for (uint32_t crc : report.crcs) put(crc, 4);
  for (const ucp::ManifestEntry& e : report.written) {
    put(e.size, 8);
    put(e.crc32, 4);
  }
  return out;
}

absl::StatusOr<RankReport> DecodeReport(const std::string& bytes, const RankWork& work, int rank) {
  size_t segments = 0;
  for (const auto& b : work.batches) segments += b.size();
  const size_t expected = segments * 4 + work.written_files.size() * 12;
  if (bytes.size() != expected) {
    return absl::DataLossError(absl::StrCat("rank ", rank, " reported ", bytes.size(),
                                            " bytes of results; its share needs ", expected));
  }
  auto get = [&bytes](size_t at, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
    return v;
  };
  RankReport report;
  for (size_t i = 0; i < segments; ++i) report.crcs.push_back(static_cast<uint32_t>(get(i * 4, 4)));
  for (size_t i = 0; i < work.written_files.size(); ++i) {
    const size_t at = segments * 4 + i * 12;
    report.written.push_back({"", get(at, 8), static_cast<uint32_t>(get(at + 8, 4))});
  }
  return report;
}

absl::StatusOr<std::vector<ucp::ManifestEntry>> FinishFiles(const Plan& plan,
                                                            absl::Span<const RankWork> work,
                                                            absl::Span<const RankReport> reports,
                                                            const std::string& dir, bool fsync) {
  // Per file: (offset, length, crc, region) of every segment, from every rank.
  std::vector<std::vector<std::tuple<uint64_t, uint64_t, uint32_t, int>>> parts(plan.files.size());
  std::vector<ucp::ManifestEntry> entries(plan.files.size());
  for (size_t r = 0; r < work.size(); ++r) {
    size_t i = 0;
    for (const auto& batch : work[r].batches) {
      for (const Segment& s : batch) {
        parts[s.file].emplace_back(s.offset, s.length, reports[r].crcs[i++], s.region);
      }
    }
    for (size_t w = 0; w < work[r].written_files.size(); ++w) {
      const int f = work[r].written_files[w];
      entries[f] = {plan.files[f].path, reports[r].written[w].size, reports[r].written[w].crc32};
    }
  }
  std::mutex mu;
  absl::Status error;
  {
    ThreadPool pool(16);
    for (size_t f = 0; f < plan.files.size(); ++f) {
      if (plan.files[f].writer) continue;
      pool.Schedule([&, f] {
        const PlanFile& file = plan.files[f];
        auto& p = parts[f];
        std::sort(p.begin(), p.end());
        std::vector<uint32_t> region_crcs(file.regions.size(), 0);
        std::vector<uint64_t> covered(file.regions.size(), 0);
        absl::Status s;
        for (const auto& [offset, length, crc, region] : p) {
          if (file.regions[region].offset + covered[region] != offset) {
            s = absl::InternalError(absl::StrCat(file.path, ": a gap in region ", region));
            break;
          }
          region_crcs[region] = Crc32Combine(region_crcs[region], crc, length);
          covered[region] += length;
        }
        uint32_t crc = 0;
        if (s.ok())
          s = WriteFrame(file, region_crcs, absl::StrCat(dir, "/", file.path), fsync, &crc);
        std::lock_guard<std::mutex> lock(mu);
        if (!s.ok() && error.ok()) error = s;
        entries[f] = {file.path, file.size, crc};
      });
    }
    pool.Wait();
  }
  UCP_RETURN_IF_ERROR(error);
  return entries;
}

}  // namespace ucp::converters::execute
