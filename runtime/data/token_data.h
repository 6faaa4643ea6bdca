// Training token data, torch-free: one stream of token ids read in place from a nanoGPT token file
// (flat uint16/uint32, no header; spec §10.3) or a Megatron/DeepSpeed memory-mapped indexed dataset
// (P.bin + P.idx; spec §10.2). Both are mapped through formats/base ByteSource; the .idx is fully
// validated at open, so reads never trust a field that was not checked.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace ucp::runtime {

class TokenData {
 public:
  virtual ~TokenData() = default;
  TokenData(const TokenData&) = delete;
  TokenData& operator=(const TokenData&) = delete;

  int64_t num_tokens() const { return num_tokens_; }
  // Copies tokens [offset, offset + out.size()) as int64. OutOfRange naming the data when the
  // range is not inside [0, num_tokens()); DataLoss for a uint64 token over INT64_MAX.
  absl::Status Read(int64_t offset, absl::Span<int64_t> out) const;
  // "nanoGPT uint16 tokens /path/train.bin (N tokens)", "indexed dataset int32 tokens /path/P (S
  // sequences, D documents, N tokens)": what error messages and logs name.
  const std::string& description() const { return description_; }

 protected:
  TokenData(int64_t num_tokens, std::string description)
      : num_tokens_(num_tokens), description_(std::move(description)) {}

 private:
  // Called with a range already checked to be inside [0, num_tokens()).
  virtual absl::Status ReadChecked(int64_t offset, absl::Span<int64_t> out) const = 0;

  int64_t num_tokens_;
  std::string description_;
};

struct TokenDataOptions {
  // Item type of a flat (nanoGPT) file: "" (uint16, what nanoGPT's prepare.py writes), "uint16"
  // or "uint32". An indexed dataset names its own type; a different non-empty value is refused.
  std::string dtype;
  // Map the token file (the default); false reads it with pread in chunks.
  bool map = true;
};

// `path` is a nanoGPT token file or an indexed-dataset prefix P (P.bin and P.idx exist); the paths
// P.bin and P.idx name the dataset too. NotFound for missing files, InvalidArgument for
// non-regular files and bad options, DataLoss for corrupt files, InvalidArgument for empty data.
absl::StatusOr<std::unique_ptr<TokenData>> OpenTokenData(const std::string& path,
                                                         const TokenDataOptions& options = {});

// Tokens held in memory (tests, synthetic data); `name` goes into the description.
std::unique_ptr<TokenData> TokenDataFromVector(std::vector<int64_t> tokens,
                                               const std::string& name = "<memory>");

}  // namespace ucp::runtime
