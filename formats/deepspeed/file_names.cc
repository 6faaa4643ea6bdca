#include "formats/deepspeed/file_names.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "formats/base/byte_source.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"

namespace ucp::formats::deepspeed {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxRankDigits = 7;
constexpr size_t kMaxListedTags = 10;

// Consumes a run of 1..kMaxRankDigits decimal digits from the front of `s`.
bool ConsumeNumber(absl::string_view* s, int* out) {
  size_t n = 0;
  while (n < s->size() && absl::ascii_isdigit(static_cast<unsigned char>((*s)[n]))) ++n;
  if (n == 0 || n > kMaxRankDigits) return false;
  int value = 0;
  for (size_t i = 0; i < n; ++i) value = value * 10 + ((*s)[i] - '0');
  *out = value;
  s->remove_prefix(n);
  return true;
}

// "{A}<infix>{B}" with nothing left over.
bool ParsePair(absl::string_view s, absl::string_view infix, int* a, int* b) {
  return ConsumeNumber(&s, a) && absl::ConsumePrefix(&s, infix) && ConsumeNumber(&s, b) &&
         s.empty();
}

std::optional<FileName> ParseModelStates(absl::string_view s) {
  FileName f;
  if (absl::ConsumePrefix(&s, keys::kZeroShardPrefix)) {
    f.kind = FileKind::kZeroModelStates;
    if (ParsePair(s, keys::kMpRankInfix, &f.dp_rank, &f.mp_rank)) return f;
    return std::nullopt;
  }
  if (absl::ConsumePrefix(&s, keys::kMpRankPrefix)) {
    f.kind = FileKind::kModelStates;
    if (ConsumeNumber(&s, &f.mp_rank) && s.empty()) return f;
    return std::nullopt;
  }
  if (absl::ConsumePrefix(&s, keys::kLayerPrefix)) {
    f.kind = FileKind::kExpertModelStates;
    if (ConsumeNumber(&s, &f.layer) && absl::ConsumePrefix(&s, keys::kExpertInfix) &&
        ParsePair(s, keys::kMpRankInfix, &f.expert, &f.mp_rank)) {
      return f;
    }
    return std::nullopt;
  }
  if (absl::ConsumePrefix(&s, keys::kExpertPrefix)) {
    f.kind = FileKind::kLegacyExpertModelStates;
    if (ParsePair(s, keys::kMpRankInfix, &f.expert, &f.mp_rank)) return f;
  }
  return std::nullopt;
}

std::optional<FileName> ParsePipelineLayer(absl::string_view s) {
  FileName f;
  f.kind = FileKind::kPipelineLayer;
  if (!absl::ConsumePrefix(&s, keys::kLayerPrefix) || !ConsumeNumber(&s, &f.layer))
    return std::nullopt;
  if (s.empty()) return f;
  if (absl::ConsumePrefix(&s, keys::kPipelineModelInfix) && ConsumeNumber(&s, &f.tp_rank) &&
      s.empty()) {
    return f;
  }
  return std::nullopt;
}

std::optional<FileName> ParseOptimStates(absl::string_view s, bool legacy) {
  FileName f;
  f.legacy_optim_suffix = legacy;
  if (absl::ConsumePrefix(&s, keys::kExppRankPrefix)) {
    f.kind = FileKind::kExpertOptimStates;
    if (ParsePair(s, keys::kMpRankInfix, &f.ep_rank, &f.mp_rank)) return f;
    return std::nullopt;
  }
  f.kind = FileKind::kOptimStates;
  for (absl::string_view prefix :
       {keys::kBf16ZeroShardPrefix, keys::kFp16ZeroShardPrefix, keys::kZeroShardPrefix}) {
    absl::string_view rest = s;
    if (!absl::ConsumePrefix(&rest, prefix)) continue;
    f.shard_prefix = std::string(prefix.substr(0, prefix.size() - keys::kZeroShardPrefix.size()));
    if (ParsePair(rest, keys::kMpRankInfix, &f.dp_rank, &f.mp_rank)) return f;
    return std::nullopt;
  }
  return std::nullopt;
}

bool LooksLikeCheckpointFile(absl::string_view name) {
  return absl::EndsWith(name, keys::kModelStatesSuffix) ||
         absl::EndsWith(name, keys::kOptimStatesSuffixLegacy) ||
         absl::EndsWith(name, keys::kPipelineModelStatesSuffix);
}

absl::Status NoCheckpointError(const fs::path& dir) {
  std::vector<std::string> tags;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec) && HasCheckpointFiles(it->path().string())) {
      tags.push_back(it->path().filename().string());
    }
  }
  std::sort(tags.begin(), tags.end());
  if (tags.size() > kMaxListedTags) tags.resize(kMaxListedTags);
  std::string hint =
      tags.empty() ? "" : absl::StrCat("; pass a tag, one of: ", absl::StrJoin(tags, ", "));
  return absl::NotFoundError(absl::StrCat(dir.string(), " has no '", keys::kLatestFile,
                                          "' file and no DeepSpeed checkpoint files", hint));
}

}  // namespace

std::string ModelStatesFileName(int mp_rank) {
  return absl::StrFormat("%s%02d%s", keys::kMpRankPrefix, mp_rank, keys::kModelStatesSuffix);
}

std::string ZeroModelStatesFileName(int dp_rank, int mp_rank) {
  return absl::StrFormat("%s%d%s%02d%s", keys::kZeroShardPrefix, dp_rank, keys::kMpRankInfix,
                         mp_rank, keys::kModelStatesSuffix);
}

std::string OptimStatesFileName(absl::string_view prefix, int dp_rank, int mp_rank) {
  return absl::StrFormat("%s%s%d%s%02d%s", prefix, keys::kZeroShardPrefix, dp_rank,
                         keys::kMpRankInfix, mp_rank, keys::kOptimStatesSuffix);
}

std::string ExpertModelStatesFileName(int layer, int expert, int mp_rank) {
  return absl::StrFormat("layer_%d_expert_%d%s%02d%s", layer, expert, keys::kMpRankInfix, mp_rank,
                         keys::kModelStatesSuffix);
}

absl::string_view FileKindName(FileKind kind) {
  switch (kind) {
    case FileKind::kModelStates: return "model states";
    case FileKind::kZeroModelStates: return "ZeRO-3 model states";
    case FileKind::kOptimStates: return "ZeRO optimizer shard";
    case FileKind::kExpertModelStates: return "expert model states";
    case FileKind::kLegacyExpertModelStates: return "legacy expert model states";
    case FileKind::kPipelineLayer: return "pipeline layer";
    case FileKind::kExpertOptimStates: return "expert optimizer states";
  }
  return "?";
}

std::optional<FileName> ParseFileName(absl::string_view basename) {
  absl::string_view s = basename;
  if (absl::ConsumeSuffix(&s, keys::kPipelineModelStatesSuffix)) return ParsePipelineLayer(s);
  if (absl::ConsumeSuffix(&s, keys::kModelStatesSuffix)) return ParseModelStates(s);
  if (absl::ConsumeSuffix(&s, keys::kOptimStatesSuffix))
    return ParseOptimStates(s, /*legacy=*/false);
  if (absl::ConsumeSuffix(&s, keys::kOptimStatesSuffixLegacy))
    return ParseOptimStates(s, /*legacy=*/true);
  return std::nullopt;
}

absl::Status CheckTagName(absl::string_view tag, absl::string_view source) {
  if (tag.empty() || tag == "." || tag == ".." || tag.find('/') != absl::string_view::npos ||
      tag.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": '", tag, "' is not a valid tag (a folder name)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadTagFile(const std::string& path) {
  // Read without blocking (a FIFO named `latest` is refused).
  absl::StatusOr<std::string> text = ReadSmallFile(path, 4096);
  if (absl::IsDataLoss(text.status())) {
    return absl::DataLossError(absl::StrCat(path, ": longer than a tag"));
  }
  UCP_RETURN_IF_ERROR(text.status());
  std::string tag(absl::StripAsciiWhitespace(*text));
  UCP_RETURN_IF_ERROR(CheckTagName(tag, path));
  return tag;
}

bool HasCheckpointFiles(const std::string& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (ParseFileName(it->path().filename().string()).has_value()) return true;
  }
  return false;
}

absl::StatusOr<CheckpointDir> ResolveCheckpointDir(const std::string& dir, absl::string_view tag) {
  std::error_code ec;
  const fs::path path(dir);
  if (!fs::is_directory(path, ec))
    return absl::NotFoundError(absl::StrCat(dir, ": not a directory"));
  if (!tag.empty()) {
    UCP_RETURN_IF_ERROR(CheckTagName(tag, "tag"));
    if (fs::is_directory(path / std::string(tag), ec)) {
      return CheckpointDir{dir, std::string(tag), (path / std::string(tag)).string()};
    }
    if (path.filename() == std::string(tag) && HasCheckpointFiles(dir)) {
      return CheckpointDir{path.parent_path().string(), std::string(tag), dir};
    }
    return absl::NotFoundError(absl::StrCat("tag '", tag, "' not found in ", dir));
  }
  const fs::path latest = path / std::string(keys::kLatestFile);
  if (fs::exists(latest, ec)) {
    UCP_ASSIGN_OR_RETURN(std::string latest_tag, ReadTagFile(latest.string()));
    if (!fs::is_directory(path / latest_tag, ec)) {
      return absl::NotFoundError(absl::StrCat(latest.string(), " names tag '", latest_tag,
                                              "', but ", (path / latest_tag).string(),
                                              " is not a directory"));
    }
    return CheckpointDir{dir, latest_tag, (path / latest_tag).string()};
  }
  if (HasCheckpointFiles(dir)) {
    return CheckpointDir{path.parent_path().string(), path.filename().string(), dir};
  }
  return NoCheckpointError(path);
}

absl::StatusOr<std::vector<ListedFile>> ListCheckpointFiles(const std::string& tag_dir) {
  std::vector<ListedFile> files;
  std::error_code ec;
  fs::directory_iterator it(tag_dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("listing ", tag_dir, ": ", ec.message()));
  for (fs::directory_iterator end; it != end; it.increment(ec)) {
    if (ec) return absl::UnavailableError(absl::StrCat("listing ", tag_dir, ": ", ec.message()));
    std::string base = it->path().filename().string();
    if (it->is_directory(ec)) {
      if (base == keys::kOffloadedTensorsDir) {
        return absl::UnimplementedError(absl::StrCat(tag_dir, ": NVMe-offloaded optimizer state ('",
                                                     keys::kOffloadedTensorsDir,
                                                     "') is not supported"));
      }
      continue;
    }
    std::optional<FileName> name = ParseFileName(base);
    if (!name.has_value()) {
      if (LooksLikeCheckpointFile(base)) {
        return absl::InvalidArgumentError(absl::StrCat(
            it->path().string(), ": not a DeepSpeed checkpoint file name this reader knows"));
      }
      continue;
    }
    files.push_back(ListedFile{it->path().string(), std::move(base), std::move(*name)});
  }
  std::sort(files.begin(), files.end(),
            [](const ListedFile& a, const ListedFile& b) { return a.basename < b.basename; });
  return files;
}

}  // namespace ucp::formats::deepspeed
