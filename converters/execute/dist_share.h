// The work of one rank of a distributed run (docs/distributed.md), computed from the plan alone,
// so that every rank knows every rank's share without a message:
//
//   * PartitionByBytes (byte_partition.h) cuts the plan's files into byte ranges and packs them
//     longest-processing-time first; a rank's payload segments are its ranges intersected with
//     the files' regions (CopyOps clipped to them). Frame bytes (zip headers, pickles) are not in
//     any segment: they need every region's CRC and are written by rank 0 at the end.
//   * Files a format library writes (PlanFile::writer, HDF5) are not cut: file k of them goes to
//     rank k mod world.
//   * A rank's segments are run in batches of about `batch_bytes`; after each, the rank appends a
//     journal line with the batch's segment CRCs (the bytes are fsynced first; dist_journal.h).
//     A rerun of the same plan on the same world size skips the batches its journal lists: the
//     resume unit.
//   * FinishFiles (rank 0): every region's CRC combined from the segments' CRCs, frames rendered
//     and written, whole-file CRCs for the manifest.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "converters/plan/plan.h"
#include "ucp/manifest.h"

namespace ucp::converters::execute {

// Bytes [offset, offset + length) of the file, inside its region `region`.
struct Segment {
  int file = 0;
  int region = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct RankWork {
  std::vector<std::vector<Segment>> batches;  // segments by file, then offset
  std::vector<int> written_files;             // indices of PlanFile::writer files
  uint64_t bytes = 0;                         // payload bytes of the segments
};

// Every rank's work. InvalidArgument for world < 1.
absl::StatusOr<std::vector<RankWork>> DivideWork(const plan::Plan& plan, int world,
                                                 uint64_t min_piece = uint64_t{1} << 20,
                                                 uint64_t batch_bytes = uint64_t{1} << 30);

// The plan that writes `segments` (ExecuteOptions::shared_files): the plan's sources, one file per
// file touched (same path and size) with one region per segment, in the order of `segments`, so
// that ExecuteResult::region_crcs flattened is the segments' CRCs in order.
plan::Plan BatchPlan(const plan::Plan& plan, absl::Span<const Segment> segments);

// A fingerprint of the plan and the world size (FNV-1a over sources, files, regions and ops): the
// ranks' handshake key and the staging folder's resume key.
uint64_t PlanKey(const plan::Plan& plan, int world);
// A fingerprint of one rank's share (its batches' segments and its written files): what its
// journal's batch indices mean (the division depends on more than the plan: UCP_DIST_MIN_PIECE).
uint64_t WorkKey(const RankWork& work);

// What one rank reports: its segments' CRCs (all batches, in order) and its written files'
// manifest entries (in the order of RankWork::written_files).
struct RankReport {
  std::vector<uint32_t> crcs;
  std::vector<ucp::ManifestEntry> written;
};
std::string EncodeReport(const RankReport& report);
// DataLoss (naming `rank`) unless the bytes are exactly a report of `work`'s shape.
absl::StatusOr<RankReport> DecodeReport(const std::string& bytes, const RankWork& work, int rank);

// Rank 0, after every report: combines the region CRCs, renders and writes (fsyncs) every torch
// file's frame under `dir`, returns the manifest entries in plan order. Internal when the
// segments do not tile a region.
absl::StatusOr<std::vector<ucp::ManifestEntry>> FinishFiles(const plan::Plan& plan,
                                                            absl::Span<const RankWork> work,
                                                            absl::Span<const RankReport> reports,
                                                            const std::string& dir, bool fsync);

}  // namespace ucp::converters::execute
