// ReadAll*: open an input with ucp's reader for its format and touch everything it describes, the
// way a converter would: every node of a torch pickle tree (and its JSON rendering), every
// storage and tensor's bytes, every safetensors tensor, every HDF5 dataset and attribute, then the
// CRC check. The first failure ends the walk and is reported with the stage it happened at.
// Shared by tests/hostile (crafted files with an expected error) and tests/mutation (random damage
// where only "a status, never a crash" is expected).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "formats/base/byte_source.h"

namespace ucp::testing {

enum class Stage : uint8_t {
  kOpen,    // the reader's Open()
  kRead,    // reading tensor, storage or dataset bytes (and attributes)
  kVerify,  // TorchFile::Verify (CRC-32 of every zip record)
  kDone,    // everything succeeded
};
const char* StageName(Stage stage);  // "open", "read", "verify", "done"

struct Outcome {
  Stage stage = Stage::kDone;
  absl::Status status;    // OK iff stage == kDone
  int64_t tensors = 0;    // tensors / datasets read successfully
  int64_t skipped = 0;    // HDF5 datasets not read because they exceed max_read_bytes
  uint64_t checksum = 0;  // of every byte read, so no read can be optimized away
};

Outcome ReadAllTorch(std::shared_ptr<const ByteSource> source);
Outcome ReadAllSafetensors(std::shared_ptr<const ByteSource> source);
// Datasets whose declared size exceeds `max_read_bytes` are counted in `skipped`, not read.
Outcome ReadAllHdf5(const std::string& path, int64_t max_read_bytes = INT64_MAX);

}  // namespace ucp::testing
