// TorchFile: a torch.save file (the zip container of deepspeed-formats.md §9.2) opened for
// reading. Open() reads the zip directory and `data.pkl` only; tensor bytes stay in the (mapped)
// file until asked for, and every storage the pickle references is checked to exist with exactly
// numel × element-size bytes, and every tensor view to lie inside its storage.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "formats/base/buffer.h"
#include "formats/base/byte_source.h"
#include "formats/torch/pickle_reader.h"
#include "formats/torch/pickle_value.h"
#include "formats/zip/zip_reader.h"

namespace ucp::formats::torch {

// Largest copy TensorBytes makes of an overlapping view (a stride of 0, as expand() leaves) that
// holds more bytes than its storage. A file can claim 2^50 such elements over one stored element.
inline constexpr uint64_t kMaxExpandedViewBytes = uint64_t{1} << 30;

struct TorchReadOptions {
  PickleLimits pickle;
  zip::ZipLimits zip;
  uint64_t max_pickle_bytes = uint64_t{1} << 30;
};

// Supplies the bytes of a storage (numel × element size). Used by the writer.
using StorageBytesFn = std::function<absl::StatusOr<Buffer>(const StorageRef&)>;

class TorchFile {
 public:
  // Errors name the file: InvalidArgument (not a torch.save zip file, or a global outside the
  // allow-list), Unimplemented (legacy non-zip format, compressed members), DataLoss (corrupt or
  // hostile content), NotFound/Unavailable (I/O).
  static absl::StatusOr<TorchFile> Open(std::shared_ptr<const ByteSource> source,
                                        const TorchReadOptions& options = {});
  static absl::StatusOr<TorchFile> OpenPath(const std::string& path,
                                            const TorchReadOptions& options = {});

  const Value& root() const { return *tree_.root; }
  const PickleTree& tree() const { return tree_; }
  // The record-name prefix ("mp_rank_00_model_states", or "archive").
  const std::string& archive_root() const { return archive_root_; }
  const std::string& name() const { return zip_.source().name(); }
  const zip::ZipReader& zip() const { return zip_; }
  // Storages referenced by the tree, in first-reference (pre-order) order.
  const std::vector<const StorageRef*>& storages() const { return storages_; }

  // The zip record of a storage of this file's tree ("<archive_root>/data/<key>"; Open checked that
  // it exists with numel × element size bytes). NotFound for a storage of another file.
  absl::StatusOr<const zip::ZipEntry*> StorageEntry(const StorageRef& storage) const;
  // The whole storage record: a zero-copy slice when the file is mapped.
  absl::StatusOr<Buffer> StorageBytes(const StorageRef& storage) const;
  // The tensor's elements in row-major order: a zero-copy slice when the view is contiguous,
  // else a gathered copy. DataLoss for an overlapping view whose copy would be larger than both
  // its storage and kMaxExpandedViewBytes.
  absl::StatusOr<Buffer> TensorBytes(const TensorRef& tensor) const;
  // Checks every record's CRC-32 (torch 1.13 does not; zip tools do). DataLoss names the record.
  absl::Status Verify() const;
  // StorageBytes as a callback (for WriteTorchFile: read → write keeps the bytes zero-copy).
  StorageBytesFn BytesFn() const;

 private:
  TorchFile(zip::ZipReader zip, PickleTree tree, std::string archive_root)
      : zip_(std::move(zip)), tree_(std::move(tree)), archive_root_(std::move(archive_root)) {}
  absl::Status IndexStorages();

  zip::ZipReader zip_;
  PickleTree tree_;
  std::string archive_root_;
  std::vector<const StorageRef*> storages_;
  absl::flat_hash_map<const StorageRef*, size_t> storage_entries_;  // index into zip_.entries()
};

// Gathers a strided view (element strides) of `storage` into row-major bytes.
Buffer GatherStrided(const Buffer& storage, const TensorRef& tensor);

}  // namespace ucp::formats::torch
