// Writes a value tree as a torch.save file (deepspeed-formats.md §9.2) with the record set and
// order of torch 1.13: <root>/data.pkl, <root>/data/<key> (keys sorted as strings), <root>/version
// ("3\n"); stored members, payloads 64-byte aligned, ZIP64 end records, real CRC-32s.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "formats/base/byte_sink.h"
#include "formats/torch/pickle_value.h"
#include "formats/torch/torch_file.h"

namespace ucp::formats::torch {

struct TorchWriteOptions {
  // Record-name prefix; torch uses the file name without its extension ("exp_avg" for exp_avg.pt).
  std::string archive_root = "archive";
};

// Writes `root` to `sink` (does not Commit). Storage bytes come from StorageRef::bytes, else from
// `bytes_of`; each must be exactly numel × element size (InvalidArgument otherwise).
absl::Status WriteTorchFile(ByteSink& sink, const Value& root, const TorchWriteOptions& options,
                            const StorageBytesFn& bytes_of = nullptr);

// WriteTorchFile to `path` atomically (temp file, fsync, rename), archive root = the file stem.
absl::Status SaveTorchFile(const std::string& path, const Value& root,
                           const StorageBytesFn& bytes_of = nullptr);

}  // namespace ucp::formats::torch
