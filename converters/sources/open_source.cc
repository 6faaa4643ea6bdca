#include "converters/sources/open_source.h"

#include <filesystem>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "converters/deepspeed/zero_source.h"
#include "formats/base/status.h"
#include "ucp/universal_source.h"
#include "ucp/weights_source.h"

namespace ucp::converters::sources {
namespace {

namespace fs = std::filesystem;

bool HasZeroFiles(const fs::path& dir) {
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (absl::EndsWith(name, "_model_states.pt") || absl::EndsWith(name, "_optim_states.pt")) return true;
  }
  return false;
}

bool LooksZero(const fs::path& dir, const std::string& tag) {
  if (!tag.empty()) return fs::is_directory(dir / tag) || dir.filename() == tag;
  return fs::exists(dir / "latest") || HasZeroFiles(dir);
}

}  // namespace

absl::StatusOr<std::unique_ptr<store::Source>> OpenSource(const std::string& path, const OpenSourceOptions& options) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": no such file or folder"));
  if (!fs::is_directory(path)) return store::OpenWeightsSource(path);
  const fs::path dir(path);
  const bool universal = fs::is_directory(dir / "zero") ||
                         (fs::exists(dir / "latest_universal") && store::IsUniversalDir(path));
  const bool zero = LooksZero(dir, options.tag);
  // An explicit tag always means the ZeRO tag folder (a missing one is NotFound, naming it).
  if (universal && options.tag.empty() && (!zero || options.prefer_universal || fs::is_directory(dir / "zero"))) {
    store::UniversalOpenOptions open;
    open.check_manifest_sizes = options.check_manifest;
    return store::OpenUniversalSource(path, open);
  }
  if (zero || !options.tag.empty()) {
    deepspeed::OpenOptions open;
    open.tag = options.tag;
    UCP_ASSIGN_OR_RETURN(auto source, deepspeed::ZeroSource::Open(path, open));
    return std::unique_ptr<store::Source>(std::move(source));
  }
  if (store::IsWeightsPath(path)) return store::OpenWeightsSource(path);
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    names.push_back(e.path().filename().string() + (e.is_directory() ? "/" : ""));
    if (names.size() == 12) { names.push_back("..."); break; }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "not a checkpoint: ", path, " holds neither a DeepSpeed checkpoint (latest, *_model_states.pt), a Universal "
      "Checkpoint (zero/) nor weights (model.safetensors, pytorch_model.bin, *.index.json); found: ",
      names.empty() ? "nothing" : absl::StrJoin(names, ", ")));
}

}  // namespace ucp::converters::sources
