#include "ucp/output_guard.h"

#include <filesystem>
#include <system_error>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/base/status.h"
#include "ucp/manifest.h"
#include "ucp/ucp_layout.h"

namespace ucp {
namespace {

namespace fs = std::filesystem;

constexpr size_t kNamedForeign = 3;  // foreign files named in a refusal; the rest are counted

fs::path DropTrailingSlash(fs::path p) {
  return p.has_relative_path() && !p.has_filename() ? p.parent_path() : p;
}

// A path as written (absolute, `.` and `..` folded) and with symlinks resolved.
std::vector<fs::path> Spellings(const std::string& path) {
  std::vector<fs::path> out;
  std::error_code ec;
  const fs::path absolute = fs::absolute(path, ec);
  if (!ec) out.push_back(DropTrailingSlash(absolute.lexically_normal()));
  const fs::path resolved = fs::weakly_canonical(path, ec);
  if (!ec) out.push_back(DropTrailingSlash(resolved));
  return out;
}

// True when `inner` is `outer` or lies below it (whole components).
bool IsWithin(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

// How `out` overlaps `input`: "is", "contains", "lies inside" (only when `inside` counts), or null.
const char* Overlap(const std::vector<fs::path>& outs, const std::string& input, bool inside) {
  if (input.empty()) return nullptr;  // not a path (it would resolve to the working folder)
  for (const fs::path& in : Spellings(input)) {
    for (const fs::path& o : outs) {
      if (o == in) return "is";
      if (IsWithin(in, o)) return "contains";
      if (inside && IsWithin(o, in)) return "lies inside";
    }
  }
  return nullptr;
}

absl::Status WouldDelete(const std::string& out, const std::vector<std::string>& foreign,
                         size_t count, absl::string_view why) {
  std::string names = absl::StrJoin(foreign, ", ");
  if (count > foreign.size()) absl::StrAppend(&names, " and ", count - foreign.size(), " more");
  return absl::FailedPreconditionError(
      absl::StrCat("--force would delete ", names, " (", why,
                   "); remove it yourself or choose another output than ", out));
}

// Every entry under `dir` that is not a regular file listed in `listed` (first kNamedForeign
// named, all counted).
absl::Status Foreign(const std::string& dir, const absl::flat_hash_set<std::string>& listed,
                     std::vector<std::string>* named, size_t* count) {
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const fs::file_status s = it->symlink_status(ec);
    if (ec) break;
    if (fs::is_directory(s)) continue;
    const std::string rel = it->path().lexically_relative(dir).generic_string();
    if (fs::is_regular_file(s) && listed.contains(rel)) continue;
    if (++*count <= kNamedForeign) named->push_back(it->path().string());
  }
  if (ec)
    return absl::FailedPreconditionError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

// --force: `out` exists and is not empty. OK only when it is a folder ucp wrote (its manifest
// lists every file in it).
absl::Status CheckReplaceable(const std::string& out) {
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(out, ec);
  if (fs::is_symlink(st))
    return WouldDelete(out, {out}, 1, "a symbolic link, not a folder ucp wrote");
  if (!fs::is_directory(st)) return WouldDelete(out, {out}, 1, "a file ucp did not write");
  absl::flat_hash_set<std::string> listed = {std::string(kManifestFile)};
  std::string why = absl::StrCat("not written by ucp: not in ", kManifestFile);
  absl::StatusOr<Manifest> manifest = ReadManifest(out);
  if (manifest.ok()) {
    for (const ManifestEntry& e : manifest->files) listed.insert(e.path);
  } else {
    listed.clear();
    why = absl::IsNotFound(manifest.status())
              ? absl::StrCat("not a ucp output: no ", kManifestFile)
              : absl::StrCat("not a ucp output: ", manifest.status().message());
  }
  std::vector<std::string> named;
  size_t count = 0;
  UCP_RETURN_IF_ERROR(Foreign(out, listed, &named, &count));
  if (count > 0) return WouldDelete(out, named, count, why);
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckOverlap(const std::string& out, const OutputCheck& check) {
  const std::vector<fs::path> outs = Spellings(out);
  for (const auto* list : {&check.inputs, &check.save_folders}) {
    for (const std::string& input : *list) {
      const char* relation = Overlap(outs, input, list == &check.inputs);
      if (relation == nullptr) continue;
      return absl::InvalidArgumentError(absl::StrCat(
          "output ", out, " ", relation,
          list == &check.inputs ? " the input " : " the save folder ", input,
          "; refused with or without --force (choose an output outside the checkpoint it reads)"));
    }
  }
  return absl::OkStatus();
}

bool IsEmptyFolder(const std::string& out) {
  std::error_code ec;
  return fs::is_directory(fs::symlink_status(out, ec)) && fs::is_empty(out, ec) && !ec;
}

absl::Status CheckOutput(const std::string& out, const OutputCheck& check) {
  absl::Status overlap = CheckOverlap(out, check);
  if (!overlap.ok()) return overlap;
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(out, ec)) || IsEmptyFolder(out)) return absl::OkStatus();
  if (!check.force)
    return absl::AlreadyExistsError(
        absl::StrCat(out, " already exists (use --force to replace it)"));
  return CheckReplaceable(out);
}

}  // namespace ucp
