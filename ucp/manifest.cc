#include "ucp/manifest.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <system_error>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "formats/base/byte_source.h"
#include "formats/base/crc32.h"
#include "formats/base/status.h"
#include "nlohmann/json.hpp"
#include "ucp/ucp_layout.h"

namespace ucp {
namespace {

namespace fs = std::filesystem;

bool SafeRelativePath(absl::string_view path) {
  if (path.empty() || path.front() == '/' || path.find('\0') != absl::string_view::npos)
    return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

absl::Status Bad(absl::string_view what) {
  return absl::DataLossError(absl::StrCat(kManifestFile, ": ", what));
}

}  // namespace

std::string ManifestToJson(Manifest manifest) {
  std::sort(manifest.files.begin(), manifest.files.end(),
            [](const ManifestEntry& a, const ManifestEntry& b) { return a.path < b.path; });
  nlohmann::json head = {{"format", kManifestFormat},
                         {"version", manifest.version},
                         {"generator", manifest.generator}};
  std::string out = head.dump();
  out.pop_back();  // '}'
  out += ",\n \"files\": [";
  for (size_t i = 0; i < manifest.files.size(); ++i) {
    const ManifestEntry& e = manifest.files[i];
    nlohmann::json entry = {
        {"path", e.path}, {"size", e.size}, {"crc32", absl::StrFormat("%08x", e.crc32)}};
    absl::StrAppend(&out, i == 0 ? "\n  " : ",\n  ", entry.dump());
  }
  out += "\n ]\n}\n";
  return out;
}

absl::StatusOr<Manifest> ParseManifest(absl::string_view json) {
  nlohmann::json doc =
      nlohmann::json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return Bad("not a JSON object");
  if (doc.value("format", "") != kManifestFormat) return Bad("\"format\" is not \"ucp-manifest\"");
  if (!doc.contains("version") || !doc["version"].is_number_integer())
    return Bad("no integer \"version\"");
  Manifest m;
  m.version = doc["version"].get<int>();
  if (m.version != kManifestVersion) return Bad(absl::StrCat("unsupported version ", m.version));
  if (doc.contains("generator") && doc["generator"].is_string())
    m.generator = doc["generator"].get<std::string>();
  if (!doc.contains("files") || !doc["files"].is_array()) return Bad("no \"files\" list");
  absl::flat_hash_set<std::string> seen;
  for (const nlohmann::json& f : doc["files"]) {
    if (!f.is_object() || !f.contains("path") || !f["path"].is_string() || !f.contains("size") ||
        !f["size"].is_number_unsigned() || !f.contains("crc32") || !f["crc32"].is_string()) {
      return Bad("an entry lacks path, size or crc32");
    }
    ManifestEntry e;
    e.path = f["path"].get<std::string>();
    e.size = f["size"].get<uint64_t>();
    uint32_t crc = 0;
    const std::string hex = f["crc32"].get<std::string>();
    if (hex.size() != 8 || !absl::SimpleHexAtoi(hex, &crc))
      return Bad(absl::StrCat("bad crc32 of ", e.path));
    e.crc32 = crc;
    if (!SafeRelativePath(e.path)) return Bad(absl::StrCat("unsafe path '", e.path, "'"));
    if (!seen.insert(e.path).second) return Bad(absl::StrCat("'", e.path, "' listed twice"));
    m.files.push_back(std::move(e));
  }
  return m;
}

absl::StatusOr<Manifest> ReadManifest(const std::string& dir) {
  const std::string path = absl::StrCat(dir, "/", kManifestFile);
  UCP_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, uint64_t{1} << 30));
  absl::StatusOr<Manifest> m = ParseManifest(text);
  if (!m.ok()) return WithContext(m.status(), dir);
  return m;
}

absl::StatusOr<std::vector<std::string>> ListFiles(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> out;
  fs::recursive_directory_iterator it(dir, ec), end;
  if (ec) return ErrnoToStatus(ec.value(), absl::StrCat("listing ", dir));
  for (; it != end; it.increment(ec)) {
    if (ec) return ErrnoToStatus(ec.value(), absl::StrCat("listing ", dir));
    if (it->is_regular_file(ec)) out.push_back(fs::relative(it->path(), dir, ec).generic_string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<ManifestEntry> HashFile(const std::string& dir, const std::string& relative_path) {
  const std::string path = absl::StrCat(dir, "/", relative_path);
  UCP_ASSIGN_OR_RETURN(RegularFile file, OpenRegularFile(path));  // never a FIFO: no blocking read
  const int fd = file.fd;
  ManifestEntry e{relative_path, 0, 0};
  std::vector<std::byte> buffer(size_t{1} << 20);
  for (;;) {
    ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status s = ErrnoToStatus(errno, absl::StrCat("reading ", path));
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    e.crc32 = Crc32(absl::MakeConstSpan(buffer.data(), static_cast<size_t>(n)), e.crc32);
    e.size += static_cast<uint64_t>(n);
  }
  ::close(fd);
  return e;
}

absl::Status VerifyDirectory(const std::string& dir) {
  UCP_ASSIGN_OR_RETURN(Manifest manifest, ReadManifest(dir));
  UCP_ASSIGN_OR_RETURN(std::vector<std::string> present, ListFiles(dir));
  absl::flat_hash_set<std::string> listed;
  for (const ManifestEntry& e : manifest.files) listed.insert(e.path);
  for (const std::string& p : present) {
    if (p != kManifestFile && !listed.contains(p)) {
      return absl::DataLossError(absl::StrCat(dir, "/", p, ": not in ", kManifestFile));
    }
  }
  for (const ManifestEntry& want : manifest.files) {
    absl::StatusOr<ManifestEntry> got = HashFile(dir, want.path);
    if (!got.ok())
      return absl::DataLossError(absl::StrCat(dir, "/", want.path, ": ", got.status().message()));
    if (got->size != want.size || got->crc32 != want.crc32) {
      return absl::DataLossError(
          absl::StrFormat("%s/%s: %d bytes, CRC-32 %08x; the manifest says %d bytes, %08x", dir,
                          want.path, got->size, got->crc32, want.size, want.crc32));
    }
  }
  return absl::OkStatus();
}

}  // namespace ucp
