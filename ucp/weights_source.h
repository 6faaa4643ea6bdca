// Weights-only checkpoints as Sources (ucp/source.h): every tensor is a parameter with one state,
// kFp32 (the stored weight, in its stored dtype). Read:
//   * a .safetensors file, or a folder with model.safetensors.index.json (HF sharding) or one
//     model.safetensors;
//   * a torch.save state_dict (pytorch_model.bin as zero_to_fp32 writes it: a dict of name →
//     tensor; other values are skipped), or a folder with pytorch_model.bin.index.json or one
//     pytorch_model.bin;
//   * an HDF5 file of datasets (names are dataset paths with '/' → '.'); these are decoded
//     (chunks may be zstd-compressed), so their states have no byte runs.
// The format is sniffed from the bytes, never the name. Tensors are zero-copy runs of the mapped
// files where the format stores them contiguously.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ucp/source.h"

namespace ucp {

// NotFound for a missing path or a folder without a recognised weights file; InvalidArgument for
// a file of another format; the readers' DataLoss errors naming the file (an index naming a
// missing shard, a tensor listed twice, a non-contiguous tensor).
absl::StatusOr<std::unique_ptr<Source>> OpenWeightsSource(const std::string& path);

// The files a weights path stands for: the file itself; in a folder, the shards its
// model.safetensors.index.json / pytorch_model.bin.index.json names, else its one
// model.safetensors / pytorch_model.bin / model.h5. NotFound when a folder holds none.
absl::StatusOr<std::vector<std::string>> WeightsFiles(const std::string& path);
// The kind of a weights file, from its first bytes (never its name). InvalidArgument for another
// format or a file that is not a regular file; Unimplemented for a legacy torch.save file.
absl::StatusOr<SourceKind> WeightsKind(const std::string& file);

}  // namespace ucp
