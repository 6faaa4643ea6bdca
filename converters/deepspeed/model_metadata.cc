// Model-states metadata besides param_shapes: AutoEP layers (deepspeed-formats.md §4.4, §7.1),
// universal_checkpoint_info (§5.2), frozen params (§2.1, §4.3), tied params and buffer names.
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "converters/deepspeed/index_builder.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "ucp/shard_layout.h"

namespace ucp::converters::deepspeed::internal_ds {
using formats::deepspeed::kMaxCount;
using formats::torch::TensorRef;
using formats::torch::Value;
namespace keys = formats::deepspeed::keys;
using formats::deepspeed::AsBool;
using formats::deepspeed::AsDict;
using formats::deepspeed::AsIntIn;
using formats::deepspeed::AsNumber;
using formats::deepspeed::AsSequence;
using formats::deepspeed::AsShape;
using formats::deepspeed::AsStr;
using formats::deepspeed::AsStrList;
using formats::deepspeed::AsTensor;
using formats::deepspeed::IsSet;
using formats::deepspeed::Require;
namespace {

absl::StatusOr<int> PositiveInt(const Value& dict, absl::string_view key, const std::string& ctx) {
  UCP_ASSIGN_OR_RETURN(const Value* v, Require(dict, key, ctx));
  UCP_ASSIGN_OR_RETURN(int64_t n, AsIntIn(v, 1, kMaxCount, absl::StrCat(ctx, ".", key)));
  return static_cast<int>(n);
}

absl::StatusOr<int> OptionalCount(const Value& dict, absl::string_view key,
                                  const std::string& ctx) {
  const Value* v = dict.Get(key);
  if (v == nullptr || v->is_none()) return 0;
  UCP_ASSIGN_OR_RETURN(int64_t n, AsIntIn(v, 0, kMaxCount, absl::StrCat(ctx, ".", key)));
  return static_cast<int>(n);
}

absl::StatusOr<std::string> OptionalStr(const Value& dict, absl::string_view key,
                                        const std::string& ctx) {
  const Value* v = dict.Get(key);
  if (v == nullptr || v->is_none()) return std::string();
  return AsStr(v, absl::StrCat(ctx, ".", key));
}

absl::StatusOr<AutoEpLayer> ReadLayer(const Value* entry, const std::string& ctx) {
  UCP_ASSIGN_OR_RETURN(const Value* d, AsDict(entry, ctx));
  AutoEpLayer l;
  l.raw = d;
  UCP_ASSIGN_OR_RETURN(const Value* id, Require(*d, keys::kMoeLayerId, ctx));
  UCP_ASSIGN_OR_RETURN(int64_t layer_id,
                       AsIntIn(id, 0, kMaxCount, absl::StrCat(ctx, ".", keys::kMoeLayerId)));
  l.moe_layer_id = static_cast<int>(layer_id);
  UCP_ASSIGN_OR_RETURN(l.module_path, OptionalStr(*d, keys::kModulePath, ctx));
  UCP_ASSIGN_OR_RETURN(l.num_experts, PositiveInt(*d, keys::kNumExperts, ctx));
  UCP_ASSIGN_OR_RETURN(l.num_local_experts, PositiveInt(*d, keys::kNumLocalExperts, ctx));
  UCP_ASSIGN_OR_RETURN(l.ep_size, PositiveInt(*d, keys::kEpSize, ctx));
  UCP_ASSIGN_OR_RETURN(const Value* prefix, Require(*d, keys::kExpertKeyPrefix, ctx));
  UCP_ASSIGN_OR_RETURN(l.expert_key_prefix,
                       AsStr(prefix, absl::StrCat(ctx, ".", keys::kExpertKeyPrefix)));
  UCP_ASSIGN_OR_RETURN(l.checkpoint_format, OptionalStr(*d, keys::kCheckpointFormat, ctx));
  if (const Value* v = d->Get(keys::kCheckpointFormatVersion); v != nullptr && !v->is_none()) {
    UCP_ASSIGN_OR_RETURN(
        int64_t version,
        AsIntIn(v, 0, kMaxCount, absl::StrCat(ctx, ".", keys::kCheckpointFormatVersion)));
    l.checkpoint_format_version = static_cast<int>(version);
  }
  UCP_ASSIGN_OR_RETURN(l.ep_group_name, OptionalStr(*d, keys::kEpGroupName, ctx));
  UCP_ASSIGN_OR_RETURN(l.ep_rank, OptionalCount(*d, keys::kEpRank, ctx));
  UCP_ASSIGN_OR_RETURN(l.expert_data_parallel_rank,
                       OptionalCount(*d, keys::kExpertDataParallelRank, ctx));
  UCP_ASSIGN_OR_RETURN(l.expert_data_parallel_world_size,
                       OptionalCount(*d, keys::kExpertDataParallelWorldSize, ctx));
  UCP_ASSIGN_OR_RETURN(l.global_expert_start, OptionalCount(*d, keys::kGlobalExpertStart, ctx));
  UCP_ASSIGN_OR_RETURN(l.global_expert_end, OptionalCount(*d, keys::kGlobalExpertEnd, ctx));
  if (l.expert_key_prefix.empty())
    return absl::DataLossError(absl::StrCat(ctx, ": empty expert_key_prefix"));
  if (static_cast<int64_t>(l.num_local_experts) * l.ep_size != l.num_experts) {
    return absl::DataLossError(absl::StrCat(ctx, ": num_experts ", l.num_experts,
                                            " != num_local_experts ", l.num_local_experts,
                                            " x ep_size ", l.ep_size));
  }
  return l;
}

// The §4.4 rules for a partition-native (ZeRO-3) entry of the file of DP rank `dp`.
absl::Status CheckZero3Layer(const AutoEpLayer& l, const ucp::Topology& t, int dp,
                             const std::string& ctx) {
  if (l.checkpoint_format != keys::kFormatZero3Partitioned ||
      l.checkpoint_format_version != keys::kZero3PartitionedFormatVersion) {
    return absl::UnimplementedError(
        absl::StrCat(ctx, ": AutoEP checkpoint_format '", l.checkpoint_format,
                     "' in a ZeRO-3 checkpoint (expected '", keys::kFormatZero3Partitioned,
                     "' version ", keys::kZero3PartitionedFormatVersion, ")"));
  }
  if (l.ep_rank != t.PlaceOnEp(dp).ep_rank ||
      l.expert_data_parallel_rank != t.PlaceOnEp(dp).edp_rank ||
      l.expert_data_parallel_world_size != t.edp() ||
      l.global_expert_start != l.ep_rank * l.num_local_experts ||
      l.global_expert_end != l.global_expert_start + l.num_local_experts) {
    return absl::FailedPreconditionError(
        absl::StrCat(ctx, ": ep_rank ", l.ep_rank, ", expert_data_parallel_rank ",
                     l.expert_data_parallel_rank, " of ", l.expert_data_parallel_world_size,
                     ", experts [", l.global_expert_start, ", ", l.global_expert_end,
                     ") do not match dp rank ", dp, " (expected ep_rank ", t.PlaceOnEp(dp).ep_rank,
                     ", expert-DP rank ", t.PlaceOnEp(dp).edp_rank, " of ", t.edp(), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<AutoEpLayer>> ReadLayers(const CheckpointFile& f) {
  const Value* list = f.root().Get(keys::kDsAutoepLayers);
  absl::string_view key = keys::kDsAutoepLayers;
  if (list == nullptr || list->is_none()) {
    list = f.root().Get(keys::kAutoepLayersLegacy);
    key = keys::kAutoepLayersLegacy;
  }
  std::vector<AutoEpLayer> out;
  if (list == nullptr || list->is_none()) return out;
  UCP_ASSIGN_OR_RETURN(auto items, AsSequence(list, absl::StrCat(f.path, ": ", key)));
  absl::flat_hash_set<int> ids;
  absl::flat_hash_set<std::string> prefixes;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string ctx = absl::StrCat(f.path, ": ", key, "[", i, "]");
    UCP_ASSIGN_OR_RETURN(AutoEpLayer l, ReadLayer(items[i], ctx));
    if (!ids.insert(l.moe_layer_id).second || !prefixes.insert(l.expert_key_prefix).second) {
      return absl::DataLossError(
          absl::StrCat(ctx, ": duplicate moe_layer_id or expert_key_prefix"));
    }
    if (!out.empty() && l.ep_size != out[0].ep_size) {
      return absl::UnimplementedError(absl::StrCat(ctx, ": AutoEP layers with different ep_size (",
                                                   l.ep_size, " and ", out[0].ep_size, ")"));
    }
    out.push_back(std::move(l));
  }
  return out;
}

absl::StatusOr<bool> UseDataBeforeExpertParallelism(const CheckpointFile& f) {
  const Value* config = f.root().Get(keys::kDsConfig);
  const Value* v = config != nullptr ? config->Get(keys::kUseDataBeforeExpertParallelism) : nullptr;
  if (v == nullptr) return false;
  return AsBool(
      v, absl::StrCat(f.path, ": ", keys::kDsConfig, ".", keys::kUseDataBeforeExpertParallelism));
}

absl::Status SetEpTopology(CheckpointIndex* index) {
  ucp::Topology& t = index->topology;
  const CheckpointFile& model = index->model_file();
  t.ep = index->autoep_layers[0].ep_size;
  if (t.tp != 1) {
    return absl::UnimplementedError(absl::StrCat(
        model.path, ": AutoEP with tensor parallelism (tp ", t.tp, ") is not supported"));
  }
  if (t.dp % t.ep != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        model.path, ": dp world size ", t.dp, " is not a multiple of AutoEP ep_size ", t.ep));
  }
  UCP_ASSIGN_OR_RETURN(t.use_data_before_expert_parallelism, UseDataBeforeExpertParallelism(model));
  for (int file : index->model_files) {
    UCP_ASSIGN_OR_RETURN(bool other, UseDataBeforeExpertParallelism(index->files[file]));
    if (other != t.use_data_before_expert_parallelism) {
      return absl::FailedPreconditionError(absl::StrCat(index->files[file].path, " and ",
                                                        model.path, " disagree on ",
                                                        keys::kUseDataBeforeExpertParallelism));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ReadAutoEp(CheckpointIndex* index) {
  const CheckpointFile& model = index->model_file();
  UCP_ASSIGN_OR_RETURN(index->autoep_layers, ReadLayers(model));
  if (index->autoep_layers.empty()) {
    if (IsSet(model.root().Get(keys::kNumExperts)) || !index->expert_files.empty()) {
      return ReadNativeMoe(index);  // num_experts without ds_autoep_layers (native_moe.cc)
    }
    return absl::OkStatus();
  }
  UCP_RETURN_IF_ERROR(SetEpTopology(index));
  const ucp::Topology& t = index->topology;
  const ZeroKind& zk = index->kind;
  for (const AutoEpLayer& l : index->autoep_layers) {
    if (zk.zero_stage != 3 && l.checkpoint_format == keys::kFormatZero3Partitioned) {
      return absl::FailedPreconditionError(
          absl::StrCat(model.path, ": AutoEP layer '", l.expert_key_prefix,
                       "' is zero3_partitioned in a ZeRO-", zk.zero_stage, " checkpoint"));
    }
  }
  if (zk.zero_stage != 3) return absl::OkStatus();
  // ZeRO-3: every rank's file carries its own EP coordinates; they must match the DP → EP mapping.
  for (int dp = 0; dp < t.dp; ++dp) {
    const CheckpointFile& f = index->model_file(0, dp);
    UCP_ASSIGN_OR_RETURN(std::vector<AutoEpLayer> layers, ReadLayers(f));
    if (layers.size() != index->autoep_layers.size()) {
      return absl::FailedPreconditionError(absl::StrCat(f.path, ": ", layers.size(),
                                                        " AutoEP layers, ", model.path, " has ",
                                                        index->autoep_layers.size()));
    }
    for (size_t i = 0; i < layers.size(); ++i) {
      const AutoEpLayer& a = layers[i];
      const AutoEpLayer& b = index->autoep_layers[i];
      const std::string ctx = absl::StrCat(f.path, ": ", keys::kDsAutoepLayers, "[", i, "]");
      if (a.expert_key_prefix != b.expert_key_prefix || a.num_experts != b.num_experts ||
          a.ep_size != b.ep_size) {
        return absl::FailedPreconditionError(absl::StrCat(ctx, ": differs from ", model.path));
      }
      UCP_RETURN_IF_ERROR(CheckZero3Layer(a, t, dp, ctx));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadUniversalCheckpointInfo(CheckpointIndex* index) {
  const CheckpointFile& model = index->model_file();
  UCP_ASSIGN_OR_RETURN(index->universal_checkpoint_info,
                       ParseUniversalCheckpointInfo(model.root(), model.path));
  return absl::OkStatus();
}

}  // namespace ucp::converters::deepspeed::internal_ds

namespace ucp::converters::deepspeed {

absl::StatusOr<UniversalCheckpointInfo> ParseUniversalCheckpointInfo(const Value& model_root,
                                                                     absl::string_view path) {
  using namespace internal_ds;  // NOLINT: the typed accessors of value_access.h
  UniversalCheckpointInfo u;
  const Value* raw = model_root.Get(keys::kUniversalCheckpointInfo);
  if (raw == nullptr || raw->is_none()) return u;
  const std::string ctx = absl::StrCat(path, ": ", keys::kUniversalCheckpointInfo);
  UCP_ASSIGN_OR_RETURN(const Value* d, AsDict(raw, ctx));
  u.raw = d;
  if (const Value* v = d->Get(keys::kUniversalCheckpointVersion); v != nullptr && !v->is_none()) {
    UCP_ASSIGN_OR_RETURN(u.version,
                         AsNumber(v, absl::StrCat(ctx, ".", keys::kUniversalCheckpointVersion)));
  }
  const std::pair<absl::string_view, std::vector<std::string>*> lists[] = {
      {keys::kTpReplicatedParameterPatterns, &u.tp_replicated_patterns},
      {keys::kParameterToAveragePatterns, &u.average_patterns},
      {keys::kParameterWithRowParallelismPatterns, &u.row_parallel_patterns},
      {keys::kVocabularyParameterPatterns, &u.vocabulary_patterns},
      {keys::kPipelineReplicatedParameterPatterns, &u.pipeline_replicated_patterns},
      {keys::kParameterWith2SubParamsCatDim0, &u.two_sub_params_cat_dim0_patterns},
      {keys::kExpertParameterPatterns, &u.expert_parameter_patterns},
  };
  for (const auto& [key, out] : lists) {
    const Value* v = d->Get(key);
    if (v == nullptr || v->is_none()) continue;
    UCP_ASSIGN_OR_RETURN(*out, AsStrList(v, absl::StrCat(ctx, ".", key)));
  }
  if (const Value* v = d->Get(keys::kOriginalVocabSize); v != nullptr && !v->is_none()) {
    UCP_ASSIGN_OR_RETURN(
        u.original_vocab_size,
        AsIntIn(v, 0, kMaxTensorElements, absl::StrCat(ctx, ".", keys::kOriginalVocabSize)));
  }
  u.sub_params = d->Get(keys::kParameterWithSubParams);
  u.sub_param_shard_widths = d->Get(keys::kSubParamShardWidths);
  u.autotp_unsupported = d->Get(keys::kAutotpUnsupportedParameterPatterns);
  return u;
}

}  // namespace ucp::converters::deepspeed

namespace ucp::converters::deepspeed::internal_ds {
namespace {

// The pieces of one frozen param in the model file `file` (of MP rank `mp`, DP rank `dp`).
absl::Status AddFrozenPieces(const CheckpointIndex& index, int file, int mp, int dp,
                             FrozenParam* p) {
  const Value* fragments = index.files[file].root().Get(keys::kFrozenParamFragments);
  if (fragments == nullptr || !fragments->is_dict())
    return absl::OkStatus();  // exclude_frozen_parameters
  const std::string what = absl::StrCat(keys::kFrozenParamFragments, "['", p->name, "']");
  const Value* v = fragments->Get(p->name);
  if (v == nullptr)
    return absl::DataLossError(absl::StrCat(FileContext(index, file), ": missing ", what));
  UCP_ASSIGN_OR_RETURN(const TensorRef* t,
                       AsTensor(v, absl::StrCat(FileContext(index, file), ": ", what)));
  UCP_ASSIGN_OR_RETURN(int64_t numel, p->shape.NumElements());
  int64_t offset = 0, count = numel, expected = numel;
  if (index.kind.zero_stage == 3) {  // each rank's padded partition (§4.3)
    const ucp::PerParamPiece piece = ucp::PerParamShard(numel, index.topology.dp, dp);
    expected = piece.partition;
    offset = piece.offset;
    count = piece.valid;
  }
  if (t->NumElements() != expected) {
    return absl::DataLossError(absl::StrCat(FileContext(index, file), ": ", what, " has ",
                                            t->NumElements(), " elements, expected ", expected));
  }
  if (count == 0) return absl::OkStatus();
  UCP_ASSIGN_OR_RETURN(TensorLocation loc, Locate(index, file, *t, 0, count, what));
  p->pieces.push_back(FrozenParam::Piece{mp, dp, offset, std::move(loc)});
  return absl::OkStatus();
}

absl::Status ReadFrozenParams(CheckpointIndex* index) {
  const CheckpointFile& model = index->model_file();
  const Value* shapes = model.root().Get(keys::kFrozenParamShapes);
  if (shapes == nullptr || shapes->is_none()) return absl::OkStatus();
  const std::string ctx = absl::StrCat(model.path, ": ", keys::kFrozenParamShapes);
  UCP_ASSIGN_OR_RETURN(const Value* d, AsDict(shapes, ctx));
  const ucp::Topology& t = index->topology;
  const bool zero3 = index->kind.zero_stage == 3;
  for (const auto& [k, v] : d->entries()) {
    FrozenParam p;
    UCP_ASSIGN_OR_RETURN(p.name, AsStr(k, absl::StrCat(ctx, " key")));
    UCP_ASSIGN_OR_RETURN(p.shape, AsShape(v, absl::StrCat(ctx, "['", p.name, "']")));
    if (index->FindParam(p.name) != nullptr) {
      return absl::DataLossError(
          absl::StrCat(ctx, ": '", p.name, "' is also a trainable parameter"));
    }
    for (int mp = 0; mp < t.mp(); ++mp) {
      for (int dp = 0; dp < (zero3 ? t.dp : 1); ++dp) {
        const int file = zero3 ? index->model_files[mp * t.dp + dp] : index->model_files[mp];
        UCP_RETURN_IF_ERROR(AddFrozenPieces(*index, file, mp, dp, &p));
      }
    }
    index->frozen_params.push_back(std::move(p));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ReadModelExtras(CheckpointIndex* index) {
  const CheckpointFile& model = index->model_file();
  if (const Value* v = model.root().Get(keys::kBufferNames); v != nullptr && !v->is_none()) {
    UCP_ASSIGN_OR_RETURN(index->buffer_names,
                         AsStrList(v, absl::StrCat(model.path, ": ", keys::kBufferNames)));
  }
  if (const Value* v = model.root().Get(keys::kSharedParams); v != nullptr && !v->is_none()) {
    const std::string ctx = absl::StrCat(model.path, ": ", keys::kSharedParams);
    UCP_ASSIGN_OR_RETURN(const Value* d, AsDict(v, ctx));
    for (const auto& [alias, source] : d->entries()) {
      UCP_ASSIGN_OR_RETURN(std::string a, AsStr(alias, absl::StrCat(ctx, " key")));
      UCP_ASSIGN_OR_RETURN(std::string s, AsStr(source, absl::StrCat(ctx, "['", a, "']")));
      index->shared_params.emplace_back(std::move(a), std::move(s));
    }
  }
  return ReadFrozenParams(index);
}

}  // namespace ucp::converters::deepspeed::internal_ds
