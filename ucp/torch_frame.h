// TorchFrame: a torch.save file (deepspeed-formats.md §9.2) described as "fixed bytes + storage
// payloads", so that a writer can stream each storage payload from elsewhere (fragments of ZeRO
// shards) straight into its place in the output file, without ever holding a tensor.
//
// A torch.save zip written by formats/zip's ZipWriter (byte-identical to torch 1.13) is, in order:
//   [local header, <root>/data.pkl, descriptor, local header of storage k0] [payload k0]
//   [descriptor k0, local header k1] [payload k1] ... [descriptor, <root>/version record,
//   central directory, ZIP64 end record + locator, end record]
// Storages are stored in torch's key order (string order of "0", "1", ..., "10", ...). Every byte
// outside the payloads is fixed by the pickle, the names and the sizes, except for each storage's
// CRC-32, which appears in its data descriptor and in the central directory. LayoutTorchFrame
// computes where every payload goes and the file size; RenderTorchFrame produces the bytes around
// the payloads once the payload CRCs are known (a writer combines them from fragment CRCs,
// Crc32Combine). Both drive the real ZipWriter over a sink that skips the payloads, so the framing
// has exactly one implementation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "formats/torch/pickle_value.h"

namespace ucp {

struct TorchFrame {
  struct Storage {
    std::string record;           // "<root>/data/<i>"
    uint64_t size = 0;            // payload bytes
    uint64_t payload_offset = 0;  // absolute offset of the payload in the file
  };
  std::string archive_root;
  std::string pickle;             // the data.pkl record
  std::vector<Storage> storages;  // index i = storage key str(i), i.e. WritePickle's order
  uint64_t file_size = 0;
};

// Bytes of the file that are not payload, at an absolute offset.
struct FramePiece {
  uint64_t offset = 0;
  std::string bytes;
};

// Lays out a file with data.pkl = `pickle` and storage payloads of `storage_sizes` bytes (storage i
// has key str(i)). InvalidArgument for an empty or oversized archive root or a too large file.
absl::StatusOr<TorchFrame> LayoutTorchFrame(std::string archive_root, std::string pickle,
                                            std::vector<uint64_t> storage_sizes);

// A frame for the value tree `root` (pickled with WritePickle), plus the tree's storages in key
// order; each payload is numel × element size of its StorageRef. `storages` may be null.
absl::StatusOr<TorchFrame> FrameTorchFile(std::string archive_root,
                                          const formats::torch::Value& root,
                                          std::vector<const formats::torch::StorageRef*>* storages);

// The non-payload bytes, in offset order, for payload CRC-32s `storage_crcs` (one per storage, in
// index order). Together with the payloads they tile [0, file_size) exactly. InvalidArgument when
// the CRC count is wrong.
absl::StatusOr<std::vector<FramePiece>> RenderTorchFrame(const TorchFrame& frame,
                                                         absl::Span<const uint32_t> storage_crcs);

}  // namespace ucp
