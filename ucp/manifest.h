// The UCP manifest, `<out>/ucp_manifest.json`: the relative path, size and CRC-32 of every other
// file in the directory, written as the last file before the directory is renamed into place
// (docs/ucp.md). DeepSpeed ignores it; ucp uses it to tell a complete conversion from a partial
// one and to verify the bytes.
//
//   {"format": "ucp-manifest", "version": 1, "generator": "ucp 0.1.0",
//    "files": [{"path": "mp_rank_00_model_states.pt", "size": 34291, "crc32": "0a1b2c3d"}, ...]}
//
// `files` is sorted by path (byte order); paths use '/' and never contain "." or ".." segments.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ucp {

inline constexpr int kManifestVersion = 1;
inline constexpr absl::string_view kManifestFormat = "ucp-manifest";

struct ManifestEntry {
  std::string path;  // relative to the UCP directory
  uint64_t size = 0;
  uint32_t crc32 = 0;  // CRC-32 (zip polynomial) of the whole file
  friend bool operator==(const ManifestEntry&, const ManifestEntry&) = default;
};

struct Manifest {
  int version = kManifestVersion;
  std::string generator = "ucp 0.1.0";
  std::vector<ManifestEntry> files;
};

// Sorts the entries and renders the JSON (one entry per line, for diffs).
std::string ManifestToJson(Manifest manifest);
// DataLoss for malformed JSON, a wrong format tag, an unsupported version, bad paths or duplicates.
absl::StatusOr<Manifest> ParseManifest(absl::string_view json);
absl::StatusOr<Manifest> ReadManifest(const std::string& dir);

// Checks `dir` against its manifest: the same file set (the manifest itself excluded), and every
// file's size and CRC-32. DataLoss naming the first file that differs; NotFound without manifest.
absl::Status VerifyDirectory(const std::string& dir);

// The relative paths of every regular file under `dir`, sorted ('/'-separated).
absl::StatusOr<std::vector<std::string>> ListFiles(const std::string& dir);
// Size and CRC-32 of one file, read in bounded chunks.
absl::StatusOr<ManifestEntry> HashFile(const std::string& dir, const std::string& relative_path);

}  // namespace ucp
