#include "converters/sources/sniff.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/file_names.h"
#include "ucp/ucp_layout.h"
#include "ucp/weights_source.h"

namespace ucp::converters::sources {
namespace {

namespace fs = std::filesystem;
using ucp::SourceKind;

enum class EntryType { kMissing, kFile, kFolder, kOther };

// The type after following links; a dangling link is missing.
EntryType TypeOf(const fs::path& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || st.type() == fs::file_type::not_found) return EntryType::kMissing;
  if (st.type() == fs::file_type::regular) return EntryType::kFile;
  if (st.type() == fs::file_type::directory) return EntryType::kFolder;
  return EntryType::kOther;
}

absl::Status NotRegular(const fs::path& path) {
  return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not a regular file or folder"));
}

absl::StatusOr<SniffedCheckpoint> Zero(const fs::path& dir, std::string why) {
  UCP_ASSIGN_OR_RETURN(formats::deepspeed::CheckpointDir resolved,
                       formats::deepspeed::ResolveCheckpointDir(dir.string(), ""));
  return SniffedCheckpoint{SourceKind::kZero, resolved.tag_dir, resolved.root, resolved.tag,
                           std::move(why)};
}

SniffedCheckpoint Universal(const fs::path& dir, std::string root, std::string why) {
  return SniffedCheckpoint{SourceKind::kUniversal, dir.string(), std::move(root),
                           dir.filename().string(), std::move(why)};
}

bool HasZeroDir(const fs::path& dir) {
  return TypeOf(dir / std::string(ucp::kZeroDir)) == EntryType::kFolder;
}

// Rule 5: the UCP folder latest_universal names.
absl::StatusOr<SniffedCheckpoint> ViaLatestUniversal(const fs::path& dir) {
  const fs::path file = dir / std::string(ucp::kLatestUniversalFile);
  UCP_ASSIGN_OR_RETURN(std::string tag, formats::deepspeed::ReadTagFile(file.string()));
  if (!HasZeroDir(dir / tag)) {
    return absl::NotFoundError(
        absl::StrCat(file.string(), " names '", tag, "', but ", (dir / tag).string(),
                     " is not a Universal Checkpoint folder (no ", ucp::kZeroDir, "/)"));
  }
  return Universal(dir / tag, dir.string(),
                   absl::StrCat(ucp::kLatestUniversalFile, " names ", tag));
}

absl::Status NotACheckpoint(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string() +
                    (TypeOf(it->path()) == EntryType::kFolder ? "/" : ""));
  }
  std::sort(names.begin(), names.end());
  if (names.size() > 12) {
    names.resize(12);
    names.push_back("...");
  }
  return absl::InvalidArgumentError(
      absl::StrCat("not a checkpoint: ", dir.string(),
                   " holds neither a DeepSpeed checkpoint (latest, *_model_states.pt), a "
                   "Universal Checkpoint (zero/, latest_universal) nor weights (model.safetensors, "
                   "pytorch_model.bin, "
                   "*.index.json, model.h5); found: ",
                   names.empty() ? "nothing" : absl::StrJoin(names, ", ")));
}

absl::StatusOr<SniffedCheckpoint> SniffFile(const fs::path& path) {
  if (formats::deepspeed::ParseFileName(path.filename().string()).has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), " is one file of a DeepSpeed checkpoint; pass its ", "folder ",
                     path.parent_path().string()));
  }
  UCP_ASSIGN_OR_RETURN(SourceKind kind, ucp::WeightsKind(path.string()));
  return SniffedCheckpoint{kind, path.string(), "", "", "a weights file"};
}

absl::StatusOr<SniffedCheckpoint> SniffFolder(const fs::path& dir, const SniffOptions& options) {
  if (HasZeroDir(dir)) {
    return Universal(dir, dir.parent_path().string(), "a Universal Checkpoint folder (zero/)");
  }
  const fs::path latest = dir / std::string(formats::deepspeed::keys::kLatestFile);
  const fs::path latest_universal = dir / std::string(ucp::kLatestUniversalFile);
  const EntryType latest_type = TypeOf(latest);
  const EntryType universal_type = TypeOf(latest_universal);
  if (latest_type == EntryType::kOther || latest_type == EntryType::kFolder) {
    return NotRegular(latest);
  }
  if (universal_type == EntryType::kOther || universal_type == EntryType::kFolder) {
    return NotRegular(latest_universal);
  }
  if (latest_type == EntryType::kFile &&
      (universal_type == EntryType::kMissing || !options.prefer_universal)) {
    UCP_ASSIGN_OR_RETURN(SniffedCheckpoint zero, Zero(dir, ""));
    zero.why = absl::StrCat(formats::deepspeed::keys::kLatestFile, " names ", zero.tag);
    return zero;
  }
  if (universal_type == EntryType::kFile) return ViaLatestUniversal(dir);
  if (formats::deepspeed::HasCheckpointFiles(dir.string()))
    return Zero(dir, "a DeepSpeed tag folder");
  absl::StatusOr<std::vector<std::string>> weights = ucp::WeightsFiles(dir.string());
  if (absl::IsNotFound(weights.status())) return NotACheckpoint(dir);  // no weights file in it
  UCP_RETURN_IF_ERROR(weights.status());
  UCP_ASSIGN_OR_RETURN(SourceKind kind, ucp::WeightsKind(weights->front()));
  return SniffedCheckpoint{kind, dir.string(), "", "", "a weights folder"};
}

}  // namespace

absl::StatusOr<SniffedCheckpoint> SniffCheckpoint(const std::string& path,
                                                  const SniffOptions& options) {
  const fs::path p(path);
  switch (TypeOf(p)) {
    case EntryType::kMissing:
      return absl::NotFoundError(absl::StrCat(path, ": no such file or folder"));
    case EntryType::kOther: return NotRegular(p);
    case EntryType::kFile:
      if (!options.tag.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": a file; a tag selects a folder of a save folder"));
      }
      return SniffFile(p);
    case EntryType::kFolder: break;
  }
  if (options.tag.empty()) return SniffFolder(p, options);
  const std::string& tag = options.tag;
  UCP_RETURN_IF_ERROR(formats::deepspeed::CheckTagName(tag, "tag"));
  fs::path dir = p / tag;
  if (TypeOf(dir) != EntryType::kFolder) {
    if (p.filename() != tag) {
      return absl::NotFoundError(absl::StrCat("tag '", tag, "' not found in ", path));
    }
    dir = p;
  }
  if (HasZeroDir(dir)) {
    return Universal(dir, dir.parent_path().string(), absl::StrCat("tag ", tag, " (zero/ inside)"));
  }
  if (!formats::deepspeed::HasCheckpointFiles(dir.string())) {
    return absl::NotFoundError(
        absl::StrCat("tag folder ", dir.string(),
                     " holds no DeepSpeed checkpoint files and no Universal Checkpoint"));
  }
  return Zero(dir, absl::StrCat("tag ", tag));
}

}  // namespace ucp::converters::sources
