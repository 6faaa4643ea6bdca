// LoadFiles: the file grid of a tag folder (deepspeed-formats.md §1.2, §1.3, §6.2, §6.3 step 1,
// §6.5 step 1). Classifies the files, opens them (metadata only), detects the ZeRO stage and the
// optimizer wrapper from every shard, derives the world sizes and checks that every (mp, dp) rank
// has exactly one file of each kind the stage writes, and that the files agree with each other.
#include <algorithm>
#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "converters/deepspeed/index_builder.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"

namespace ucp::converters::deepspeed::internal_ds {
using formats::deepspeed::kMaxCount;
using formats::torch::Value;
using formats::torch::ValueKind;
namespace keys = formats::deepspeed::keys;
using formats::deepspeed::AsDict;
using formats::deepspeed::AsIntIn;
using formats::deepspeed::AsZeroStage;
using formats::deepspeed::Describe;
using formats::deepspeed::FileKind;
using formats::deepspeed::FileKindName;
using formats::deepspeed::FileName;
using formats::deepspeed::IsSet;
using formats::deepspeed::ListCheckpointFiles;
using formats::deepspeed::ListedFile;
using formats::deepspeed::Require;
namespace {

struct ShardKind {
  int stage = 1;
  OptimizerWrapper wrapper = OptimizerWrapper::kZeroOptimizer;
};

// expp_rank files are read at ZeRO-0 only (AutoEP without ZeRO, §1.8).
absl::Status RejectUnsupportedKinds(const std::vector<ListedFile>& files, bool zero0) {
  for (const ListedFile& f : files) {
    switch (f.name.kind) {
      case FileKind::kPipelineLayer:
        return absl::UnimplementedError(absl::StrCat(
            f.path, ": pipeline-parallel checkpoints (layer files) are not supported"));
      case FileKind::kExpertOptimStates:
        if (zero0) break;
        return absl::UnimplementedError(absl::StrCat(
            f.path, ": MoE optimizer states without ZeRO (expp_rank files) beside ZeRO shards"));
      case FileKind::kLegacyExpertModelStates:
        return absl::UnimplementedError(
            absl::StrCat(f.path, ": legacy native-MoE expert files are not supported"));
      default: break;
    }
  }
  return absl::OkStatus();
}

// The wrapper is told apart by the keys of optimizer_state_dict (§2.2, §2.3, §3.6).
absl::StatusOr<ShardKind> DetectShard(const CheckpointFile& f) {
  const std::string ctx = f.path;
  UCP_ASSIGN_OR_RETURN(const Value* osd_value, Require(f.root(), keys::kOptimizerStateDict, ctx));
  UCP_ASSIGN_OR_RETURN(const Value* osd,
                       AsDict(osd_value, absl::StrCat(ctx, ": ", keys::kOptimizerStateDict)));
  const std::string osd_ctx = absl::StrCat(ctx, ": ", keys::kOptimizerStateDict);
  ShardKind kind;
  if (const Value* stage = osd->Get(keys::kZeroStage); stage != nullptr) {
    UCP_ASSIGN_OR_RETURN(kind.stage,
                         AsZeroStage(stage, absl::StrCat(osd_ctx, ".", keys::kZeroStage)));
    if (kind.stage == 3 && osd->Get(keys::kFp32FlatGroups) != nullptr) {
      kind.wrapper = OptimizerWrapper::kZeroStage3;
      return kind;
    }
    if ((kind.stage == 1 || kind.stage == 2) &&
        osd->Get(keys::kSinglePartitionOfFp32Groups) != nullptr) {
      kind.wrapper = OptimizerWrapper::kZeroOptimizer;
      return kind;
    }
  } else if (osd->Get(keys::kLossScaler) == nullptr &&
             osd->Get(keys::kSinglePartitionOfFp32Groups) != nullptr &&
             osd->Get(keys::kBaseOptimizerState) != nullptr) {
    kind.wrapper =
        OptimizerWrapper::kBf16Optimizer;  // no zero_stage: DeepSpeed treats it as stage 1
    return kind;
  }
  std::vector<std::string> names;
  for (const auto& [k, v] : osd->entries())
    names.push_back(k->is(ValueKind::kStr) ? k->str() : "?");
  return absl::UnimplementedError(
      absl::StrCat(osd_ctx, ": unknown optimizer layout (zero_stage ",
                   osd->Get(keys::kZeroStage) ? absl::StrCat(kind.stage) : "absent",
                   ", keys: ", absl::StrJoin(names, ", "), ")"));
}

std::string ExpectedModelName(bool zero3, int dp, int mp) {
  return zero3 ? formats::deepspeed::ZeroModelStatesFileName(dp, mp)
               : formats::deepspeed::ModelStatesFileName(mp);
}

absl::Status OpenFiles(const std::vector<ListedFile>& listed, const OpenOptions& options,
                       CheckpointIndex* index) {
  for (const ListedFile& l : listed) {
    UCP_ASSIGN_OR_RETURN(TorchFile tf, TorchFile::OpenPath(l.path, options.read));
    if (!tf.root().is_dict()) {
      return absl::DataLossError(absl::StrCat(l.path, ": top level is a ",
                                              formats::torch::ValueKindName(tf.root().kind()),
                                              ", not a dict"));
    }
    index->files.push_back(CheckpointFile{l.path, l.basename, l.name,
                                          std::make_shared<const TorchFile>(std::move(tf))});
  }
  return absl::OkStatus();
}

// Stage and wrapper of every shard; they must agree (a shard from another run is caught here).
absl::Status DetectStage(CheckpointIndex* index) {
  int first = -1;
  ShardKind first_kind;
  for (int i = 0; i < static_cast<int>(index->files.size()); ++i) {
    if (index->files[i].name.kind != FileKind::kOptimStates) continue;
    UCP_ASSIGN_OR_RETURN(ShardKind kind, DetectShard(index->files[i]));
    if (first < 0) {
      first = i;
      first_kind = kind;
    } else if (kind.stage != first_kind.stage || kind.wrapper != first_kind.wrapper) {
      return absl::FailedPreconditionError(absl::StrCat(
          "mixed optimizer shards: ", index->files[i].path, " is ZeRO-", kind.stage, " ",
          OptimizerWrapperName(kind.wrapper), ", ", index->files[first].path, " is ZeRO-",
          first_kind.stage, " ", OptimizerWrapperName(first_kind.wrapper)));
    }
  }
  index->kind.zero_stage = first_kind.stage;
  index->kind.wrapper = first_kind.wrapper;
  return absl::OkStatus();
}

// Reads an int key of a model file, -1 when absent.
absl::StatusOr<int64_t> OptionalInt(const CheckpointFile& f, absl::string_view key) {
  const Value* v = f.root().Get(key);
  if (v == nullptr || v->is_none()) return -1;
  return AsIntIn(v, 1, kMaxCount, absl::StrCat(f.path, ": ", key));
}

// (mp, dp) → file index for the files of one kind. FailedPrecondition on duplicates.
absl::StatusOr<std::map<std::pair<int, int>, int>> RankMap(const CheckpointIndex& index,
                                                           FileKind kind) {
  std::map<std::pair<int, int>, int> out;
  for (int i = 0; i < static_cast<int>(index.files.size()); ++i) {
    const FileName& n = index.files[i].name;
    if (n.kind != kind) continue;
    auto [it, inserted] = out.emplace(std::make_pair(n.mp_rank, std::max(n.dp_rank, 0)), i);
    if (!inserted) {
      return absl::FailedPreconditionError(
          absl::StrCat("two files for mp rank ", n.mp_rank, ", dp rank ", n.dp_rank, ": ",
                       index.files[it->second].path, " and ", index.files[i].path));
    }
  }
  return out;
}

// World sizes from the first model file, checked against the ranks the file names carry.
absl::Status SizeGrid(const std::map<std::pair<int, int>, int>& optim,
                      const std::map<std::pair<int, int>, int>& model, CheckpointIndex* index) {
  ucp::Topology& t = index->topology;
  const CheckpointFile& model0 = index->files[model.begin()->second];
  UCP_ASSIGN_OR_RETURN(int64_t dp_world, OptionalInt(model0, keys::kDpWorldSize));
  UCP_ASSIGN_OR_RETURN(int64_t mp_world, OptionalInt(model0, keys::kMpWorldSize));
  int max_dp = 0, max_mp = 0;
  for (const auto& [rank, file] : optim) {
    max_mp = std::max(max_mp, rank.first);
    max_dp = std::max(max_dp, rank.second);
  }
  for (const auto& [rank, file] : model) max_mp = std::max(max_mp, rank.first);
  t.dp = dp_world > 0 ? static_cast<int>(dp_world) : max_dp + 1;
  t.tp =
      mp_world > 0 ? static_cast<int>(mp_world) : max_mp + 1;  // CheckModelFilesAgree splits off pp
  t.pp = 1;
  for (const auto* ranks : {&optim, &model}) {
    for (const auto& [rank, file] : *ranks) {
      if (rank.second >= t.dp || rank.first >= t.mp()) {
        return absl::FailedPreconditionError(
            absl::StrCat(index->files[file].path, ": rank beyond the world size recorded in ",
                         model0.path, " (dp_world_size ", t.dp, ", mp_world_size ", t.mp(),
                         "); is it a file of another checkpoint?"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status FillGrid(const std::map<std::pair<int, int>, int>& optim,
                      const std::map<std::pair<int, int>, int>& model, const std::string& prefix,
                      CheckpointIndex* index) {
  const ucp::Topology& t = index->topology;
  const ZeroKind& zk = index->kind;
  const bool zero3 = zk.zero_stage == 3;
  for (int mp = 0; mp < t.mp(); ++mp) {
    for (int dp = 0; dp < t.dp; ++dp) {
      auto it = optim.find({mp, dp});
      if (it == optim.end()) {
        return absl::NotFoundError(absl::StrCat(
            "missing ZeRO optimizer shard of dp rank ", dp, " (of ", t.dp, "), mp rank ", mp, ": ",
            index->dir.tag_dir, "/", formats::deepspeed::OptimStatesFileName(prefix, dp, mp)));
      }
      index->optim_files.push_back(it->second);
      if (!zero3 && dp > 0) continue;
      auto m = model.find({mp, dp});
      if (m == model.end()) {
        return absl::NotFoundError(absl::StrCat(
            "missing model states of mp rank ", mp, zero3 ? absl::StrCat(", dp rank ", dp) : "",
            ": ", index->dir.tag_dir, "/", ExpectedModelName(zero3, dp, mp)));
      }
      index->model_files.push_back(m->second);
    }
  }
  return absl::OkStatus();
}

// Values every model file must agree on, and the tp/pp split of the MP ranks.
absl::Status CheckModelFilesAgree(CheckpointIndex* index) {
  const CheckpointFile& first = index->files[index->model_files[0]];
  for (int file : index->model_files) {
    const CheckpointFile& f = index->files[file];
    for (absl::string_view key : {keys::kDpWorldSize, keys::kMpWorldSize, keys::kGlobalSteps}) {
      const Value* a = first.root().Get(key);
      const Value* b = f.root().Get(key);
      if ((a == nullptr) != (b == nullptr) ||
          (a && (a->kind() != b->kind() || a->int_value() != b->int_value()))) {
        return absl::FailedPreconditionError(absl::StrCat("mixed checkpoint: ", f.path, " has ",
                                                          key, " ", Describe(b), ", ", first.path,
                                                          " has ", Describe(a)));
      }
    }
  }
  ucp::Topology& t = index->topology;
  // SizeGrid set tp = mp_world_size, pp = 1; checkpoint_parallel_dimensions may split it.
  if (const Value* dims = first.root().Get(keys::kCheckpointParallelDimensions); IsSet(dims)) {
    const std::string ctx = absl::StrCat(first.path, ": ", keys::kCheckpointParallelDimensions);
    UCP_ASSIGN_OR_RETURN(int64_t tp, AsIntIn(dims->Get(keys::kTpDegree), 1, kMaxCount,
                                             absl::StrCat(ctx, ".", keys::kTpDegree)));
    UCP_ASSIGN_OR_RETURN(int64_t pp, AsIntIn(dims->Get(keys::kPpDegree), 1, kMaxCount,
                                             absl::StrCat(ctx, ".", keys::kPpDegree)));
    if (tp * pp != t.mp()) {
      return absl::FailedPreconditionError(
          absl::StrCat(ctx, ": tp_degree ", tp, " x pp_degree ", pp, " != mp_world_size ", t.mp()));
    }
    t.tp = static_cast<int>(tp);
    t.pp = static_cast<int>(pp);
  }
  if (t.pp > 1) {
    return absl::UnimplementedError(
        absl::StrCat(first.path, ": pipeline parallelism (pp_degree ", t.pp, ") is not supported"));
  }
  return absl::OkStatus();
}

// Every file that records a ds_version must record the same one.
absl::Status CheckVersionsAgree(const CheckpointIndex& index) {
  const Value* reference = nullptr;
  const CheckpointFile* reference_file = nullptr;
  for (const CheckpointFile& f : index.files) {
    const Value* v = f.root().Get(keys::kDsVersion);
    if (v == nullptr) continue;
    if (reference == nullptr) {
      reference = v;
      reference_file = &f;
    } else if (!v->is(ValueKind::kStr) || !reference->is(ValueKind::kStr) ||
               v->str() != reference->str()) {
      return absl::FailedPreconditionError(
          absl::StrCat("mixed checkpoint: ", f.path, " has ds_version ", Describe(v), ", ",
                       reference_file->path, " has ", Describe(reference)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ShardPrefix(const std::vector<ListedFile>& listed) {
  const ListedFile* first = nullptr;
  for (const ListedFile& l : listed) {
    if (l.name.kind != FileKind::kOptimStates) continue;
    if (first == nullptr) {
      first = &l;
    } else if (l.name.shard_prefix != first->name.shard_prefix) {
      return absl::FailedPreconditionError(
          absl::StrCat("mixed optimizer shard names: ", first->basename, " and ", l.basename));
    }
  }
  return first->name.shard_prefix;
}

// ZeRO-0 (§1.3, §2.4): no optimizer shards; mp_rank files carry the torch optimizer state.
absl::Status LoadZero0Files(const std::vector<ListedFile>& listed, const OpenOptions& options,
                            CheckpointIndex* index) {
  UCP_RETURN_IF_ERROR(OpenFiles(listed, options, index));
  index->kind.zero_stage = 0;
  index->kind.wrapper = OptimizerWrapper::kTorchOptimizer;
  // AutoEP without ZeRO (§1.8): layer_*_expert_* files hold the expert weights and
  // expp_rank_<e> files each EP rank's torch optimizer state (IndexZero0 checks them).
  std::map<int, int> expp;
  for (int i = 0; i < static_cast<int>(index->files.size()); ++i) {
    const CheckpointFile& f = index->files[i];
    if (f.name.kind == FileKind::kZeroModelStates) {
      return absl::UnimplementedError(
          absl::StrCat(f.path, ": a ", FileKindName(f.name.kind),
                       " file in a checkpoint without ZeRO optimizer shards"));
    }
    if (f.name.kind == FileKind::kExpertModelStates) index->expert_files.push_back(i);
    if (f.name.kind == FileKind::kExpertOptimStates) {
      if (f.name.mp_rank != 0 || !expp.emplace(f.name.ep_rank, i).second)
        return absl::UnimplementedError(absl::StrCat(f.path, ": unexpected expp_rank file"));
    }
  }
  for (const auto& [ep, file] : expp) {
    if (ep != static_cast<int>(index->expert_optim_files.size())) {
      return absl::NotFoundError(absl::StrCat(index->dir.tag_dir, ": no expp_rank_",
                                              index->expert_optim_files.size(),
                                              "_mp_rank_00_optim_states.pt"));
    }
    index->expert_optim_files.push_back(file);
  }
  std::sort(index->expert_files.begin(), index->expert_files.end(), [&](int a, int b) {
    const FileName& x = index->files[a].name;
    const FileName& y = index->files[b].name;
    return std::tie(x.layer, x.expert, x.mp_rank) < std::tie(y.layer, y.expert, y.mp_rank);
  });
  UCP_ASSIGN_OR_RETURN(auto model, RankMap(*index, FileKind::kModelStates));
  UCP_RETURN_IF_ERROR(SizeGrid({}, model, index));
  for (int mp = 0; mp < index->topology.mp(); ++mp) {
    auto m = model.find({mp, 0});
    if (m == model.end()) {
      return absl::NotFoundError(absl::StrCat("missing model states of mp rank ", mp, ": ",
                                              index->dir.tag_dir, "/",
                                              ExpectedModelName(false, 0, mp)));
    }
    index->model_files.push_back(m->second);
  }
  UCP_RETURN_IF_ERROR(CheckModelFilesAgree(index));
  UCP_RETURN_IF_ERROR(CheckVersionsAgree(*index));
  if (index->topology.mp() != 1) {
    return absl::UnimplementedError(absl::StrCat(index->files[index->model_files[0]].path,
                                                 ": ZeRO-0 with tensor parallelism (mp_world_size ",
                                                 index->topology.mp(), ") is not supported"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LoadFiles(const OpenOptions& options, CheckpointIndex* index) {
  UCP_ASSIGN_OR_RETURN(std::vector<ListedFile> listed, ListCheckpointFiles(index->dir.tag_dir));
  const bool any_optim = std::any_of(listed.begin(), listed.end(), [](const ListedFile& l) {
    return l.name.kind == FileKind::kOptimStates;
  });
  UCP_RETURN_IF_ERROR(RejectUnsupportedKinds(listed, !any_optim));
  if (!any_optim) {
    const bool any_model = std::any_of(listed.begin(), listed.end(), [](const ListedFile& l) {
      return l.name.kind == FileKind::kModelStates;
    });
    if (any_model) return LoadZero0Files(listed, options, index);
    return absl::NotFoundError(
        absl::StrCat(index->dir.tag_dir, ": no ZeRO optimizer shards (*_optim_states.pt)"));
  }
  UCP_ASSIGN_OR_RETURN(std::string prefix, ShardPrefix(listed));
  UCP_RETURN_IF_ERROR(OpenFiles(listed, options, index));
  UCP_RETURN_IF_ERROR(DetectStage(index));
  const bool zero3 = index->kind.zero_stage == 3;
  const FileKind model_kind = zero3 ? FileKind::kZeroModelStates : FileKind::kModelStates;
  const FileKind wrong_kind = zero3 ? FileKind::kModelStates : FileKind::kZeroModelStates;
  for (const CheckpointFile& f : index->files) {
    if (f.name.kind == wrong_kind) {
      return absl::FailedPreconditionError(absl::StrCat(f.path, ": a ", FileKindName(wrong_kind),
                                                        " file in a ZeRO-", index->kind.zero_stage,
                                                        " checkpoint"));
    }
  }
  UCP_ASSIGN_OR_RETURN(auto optim, RankMap(*index, FileKind::kOptimStates));
  UCP_ASSIGN_OR_RETURN(auto model, RankMap(*index, model_kind));
  if (model.empty()) {
    return absl::NotFoundError(absl::StrCat(index->dir.tag_dir, ": no model states file (",
                                            ExpectedModelName(zero3, 0, 0), ")"));
  }
  UCP_RETURN_IF_ERROR(SizeGrid(optim, model, index));
  UCP_RETURN_IF_ERROR(FillGrid(optim, model, prefix, index));
  UCP_RETURN_IF_ERROR(CheckModelFilesAgree(index));
  UCP_RETURN_IF_ERROR(CheckVersionsAgree(*index));
  for (int i = 0; i < static_cast<int>(index->files.size()); ++i) {
    if (index->files[i].name.kind == FileKind::kExpertModelStates) index->expert_files.push_back(i);
  }
  std::sort(index->expert_files.begin(), index->expert_files.end(), [&](int a, int b) {
    const FileName& x = index->files[a].name;
    const FileName& y = index->files[b].name;
    return std::tie(x.layer, x.expert, x.mp_rank) < std::tie(y.layer, y.expert, y.mp_rank);
  });
  return absl::OkStatus();
}

}  // namespace ucp::converters::deepspeed::internal_ds
