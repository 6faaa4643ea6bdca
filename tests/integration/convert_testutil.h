// Helpers for the convert integration tests: comparing a converted UCP folder with DeepSpeed's
// (file set, bytes, value trees with tensor CRCs, first difference named precisely), and making a
// bigger ZeRO-3 checkpoint from a fixture for the interruption tests.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace ucp::testing {

// fixtures/deepspeed/<name>, or fixtures/<name> for "<set>/<case>" (UCP_SOURCE_DIR is set by
// ucp_test).
std::string FixtureCase(const std::string& name);

// A fresh folder under the temp dir, removed when the object dies.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& label);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A torch.save file as JSON (value_json.h encoding) with every tensor's row-major bytes and its
// whole storage replaced by CRC-32s ("data_crc32", "storage_crc32"); the tree keeps key order,
// types, dtypes, shapes, strides and requires_grad.
absl::StatusOr<nlohmann::json> TorchFileDigest(const std::string& path);

// The first place where `a` and `b` differ, as a path like `.dict[3][1].tensor.shape[0]` with
// both values; empty when equal.
// Drops the dict entries whose key path ("optimizer_state_dict/ds_version", "*" for list items)
// is in `excluded`, and every tensor's storage details (storage sharing is not part of the
// contract), from a TorchFileDigest, in place.
void NormalizeDigest(nlohmann::json& j, const std::string& path,
                     const std::set<std::string>& excluded);

std::string FirstDifference(const nlohmann::json& a, const nlohmann::json& b,
                            const std::string& path = "");

struct FolderComparison {
  std::vector<std::string> identical;   // byte-identical files
  std::vector<std::string> tree_equal;  // different bytes, equal value trees and tensor bytes
  std::vector<std::string> problems;    // one line each: missing/extra files, first differences
};

// Compares `ours` with DeepSpeed's `theirs`: the same relative file set (ours may also hold
// `ignore`), and each file byte-identical or (torch files) equal as TorchFileDigest.
absl::StatusOr<FolderComparison> CompareFolders(const std::string& ours, const std::string& theirs,
                                                const std::string& ignore);

// Writes a ZeRO-3 checkpoint tag folder at `dst` from the fixture tag folder `src` (fp32, no
// AutoEP): every parameter's dim 0 multiplied by `scale`, flat partitions regenerated with
// deterministic values. About (src trainable elements) x scale x 12 bytes of optimizer files.
absl::Status MakeScaledZero3(const std::string& src, const std::string& dst, int64_t scale);

}  // namespace ucp::testing
