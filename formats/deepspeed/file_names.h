// Names of the files in a DeepSpeed checkpoint (deepspeed-formats.md §1): finding the tag folder
// from a save root (`latest`) and classifying each file of the tag folder by its name. Matching is
// explicit prefix / number / suffix parsing of the patterns in deepspeed_keys.h.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ucp::formats::deepspeed {

enum class FileKind : uint8_t {
  kModelStates,              // mp_rank_{MP}_model_states.pt (ZeRO 0/1/2, BF16_Optimizer)
  kZeroModelStates,          // zero_pp_rank_{DP}_mp_rank_{MP}_model_states.pt (ZeRO-3, every rank)
  kOptimStates,              // [bf16_|fp16_]zero_pp_rank_{DP}_mp_rank_{MP}_optim_states.pt
  kExpertModelStates,        // layer_{L}_expert_{E}_mp_rank_{MP}_model_states.pt
  kLegacyExpertModelStates,  // expert_{E}_mp_rank_{MP}_model_states.pt
  kPipelineLayer,            // layer_{LL}-model_{TT}-model_states.pt, layer_{LL}-model_states.pt
  kExpertOptimStates,        // expp_rank_{EP}_mp_rank_{MP}_optim_states.pt (MoE without ZeRO)
};
absl::string_view FileKindName(FileKind kind);

// What a file name says. Ranks not in the name are -1.
struct FileName {
  FileKind kind;
  int dp_rank = -1;
  int mp_rank = -1;
  int layer = -1;   // MoE layer id (expert files) or pipeline layer index
  int expert = -1;  // global expert id
  int ep_rank = -1;
  int tp_rank = -1;                  // pipeline layer files
  std::string shard_prefix;          // optimizer shards: "", "bf16_" or "fp16_"
  bool legacy_optim_suffix = false;  // "..._mp_rank_00optim_states.pt"
};

// Classifies a base name; nullopt when it matches none of the patterns. Rank numbers are decimal
// digits (leading zeros allowed, at most 7 digits).
std::optional<FileName> ParseFileName(absl::string_view basename);

// The names DeepSpeed gives its files (ParseFileName's inverse); ranks are not checked here.
// mp_rank_<MP:02>_model_states.pt (ZeRO 0/1/2, BF16_Optimizer).
std::string ModelStatesFileName(int mp_rank);
// zero_pp_rank_<DP>_mp_rank_<MP:02>_model_states.pt (ZeRO-3, one per rank).
std::string ZeroModelStatesFileName(int dp_rank, int mp_rank);
// <prefix>zero_pp_rank_<DP>_mp_rank_<MP:02>_optim_states.pt; prefix "", "bf16_" or "fp16_".
std::string OptimStatesFileName(absl::string_view prefix, int dp_rank, int mp_rank);
// layer_<L>_expert_<E>_mp_rank_<MP:02>_model_states.pt (native MoE and AutoEP at ZeRO 0/1/2).
std::string ExpertModelStatesFileName(int layer, int expert, int mp_rank);

// InvalidArgument "<source>: '<tag>' is not a valid tag" unless `tag` is one folder name (not
// empty, ".", "..", no '/' or NUL).
absl::Status CheckTagName(absl::string_view tag, absl::string_view source);
// The tag a `latest` or `latest_universal` file names, stripped of whitespace and checked with
// CheckTagName. Never blocks (OpenRegularFile: a FIFO is refused); DataLoss past 4096 bytes.
absl::StatusOr<std::string> ReadTagFile(const std::string& path);

// True when `dir` holds a file whose name is a DeepSpeed checkpoint file's (ParseFileName).
bool HasCheckpointFiles(const std::string& dir);

// Where a checkpoint lives: `root` is the save folder (holding `latest`; empty when unknown), `tag`
// the tag folder's name and `tag_dir` its path.
struct CheckpointDir {
  std::string root;
  std::string tag;
  std::string tag_dir;
};

// Resolves `dir`, which may be a save root or a tag folder. With a non-empty `tag`, dir/tag is used
// (or dir itself when its name is `tag`); otherwise the tag is read from dir/latest (stripped of
// whitespace); otherwise dir must itself hold checkpoint files.
// NotFound: dir missing, `latest` naming a missing folder, no tag and no checkpoint files (the
// message lists sub-folders that hold checkpoint files). InvalidArgument: a tag with '/' or "..".
absl::StatusOr<CheckpointDir> ResolveCheckpointDir(const std::string& dir, absl::string_view tag);

struct ListedFile {
  std::string path;
  std::string basename;
  FileName name;
};

// The recognised files of a tag folder, sorted by base name. Other files are ignored, except that a
// name ending in _model_states.pt / optim_states.pt that matches no pattern is an error
// (InvalidArgument naming it), and an `offloaded_tensors` folder (NVMe optimizer offload) is
// Unimplemented.
absl::StatusOr<std::vector<ListedFile>> ListCheckpointFiles(const std::string& tag_dir);

}  // namespace ucp::formats::deepspeed
