// The ZeRO → UCP planner's files that are re-saved value trees: zero/optimizer_state.pt (§5.3) and
// the model-states files (§5.4), plus the helpers that turn a tree into a planned torch file.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/plan/tree_edit.h"
#include "converters/sinks/ucp/zero_to_ucp_internal.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/value_access.h"
#include "formats/torch/torch_file.h"
#include "formats/torch/value_json.h"
#include "ucp/torch_frame.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::sinks::internal_ucp_sink {

using plan::AddStorageRuns;
using plan::CopyDict;
using plan::CopyOp;
using plan::FileRole;
using plan::IsKey;
using plan::Plan;
using plan::PlanFile;
using plan::Region;
using plan::SetOrReplace;
using plan::StorageFrames;

namespace {

namespace keys = formats::deepspeed::keys;
namespace ids = formats::deepspeed;
using deepspeed::CheckpointFile;
using deepspeed::CheckpointIndex;
using formats::torch::ValueKind;

// Python truthiness of the values DeepSpeed tests with `if x:`.
bool Truthy(const Value* v) {
  switch (v->kind()) {
    case ValueKind::kNone: return false;
    case ValueKind::kBool:
    case ValueKind::kInt: return v->int_value() != 0;
    case ValueKind::kList:
    case ValueKind::kTuple:
    case ValueKind::kSet:
    case ValueKind::kFrozenSet: return !v->items().empty();
    case ValueKind::kDict:
    case ValueKind::kOrderedDict: return !v->entries().empty();
    case ValueKind::kStr:
    case ValueKind::kBytes: return !v->str().empty();
    default: return true;
  }
}

// [value] * len(seq), as ZeROCheckpoint does for group_paddings and partition_count.
absl::StatusOr<const Value*> RepeatedInts(ValueArena& arena, const Value* seq, int64_t value,
                                          absl::string_view what) {
  if (!seq->is_sequence()) {
    return absl::DataLossError(absl::StrCat(what, ": expected a list, found ", ids::Describe(seq)));
  }
  Value* list = arena.List();
  for (size_t i = 0; i < seq->items().size(); ++i) ValueArena::Append(list, arena.Int(value));
  return list;
}

// ds_autoep_layers, else the legacy autoep_layers; nullptr when neither is set.
const Value* AutoepMetadata(const Value& root) {
  const Value* v = root.Get(keys::kDsAutoepLayers);
  if (v == nullptr || v->is_none()) v = root.Get(keys::kAutoepLayersLegacy);
  return v == nullptr || v->is_none() ? nullptr : v;
}

// ZeRO-1/2: the "lightweight" metadata of every model file, one entry per expert_key_prefix
// (deepspeed_checkpoint.py _lightweight_autoep_metadata + ds_to_universal
// _aggregate_autoep_zero12_metadata).
absl::StatusOr<const Value*> AggregatedAutoepMetadata(const CheckpointIndex& index,
                                                      ValueArena& arena) {
  Value* out = arena.List();
  absl::flat_hash_map<std::string, std::pair<const Value*, std::string>> by_prefix;
  for (int fi : index.model_files) {
    const CheckpointFile& file = index.files[fi];
    const Value* layers = AutoepMetadata(file.root());
    if (layers == nullptr) continue;
    const std::string what = absl::StrCat(file.path, ": ", keys::kDsAutoepLayers);
    UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> entries, ids::AsSequence(layers, what));
    for (const Value* entry : entries) {
      UCP_ASSIGN_OR_RETURN(const Value* dict, ids::AsDict(entry, what));
      Value* light = arena.Dict();
      for (absl::string_view field : keys::kUcpAutoepMetadataFields) {
        if (const Value* v = dict->Get(field); v != nullptr) arena.SetItem(light, field, v);
      }
      const Value* prefix = light->Get(keys::kExpertKeyPrefix);
      if (prefix == nullptr || !prefix->is(ValueKind::kStr) || prefix->str().empty()) {
        return absl::DataLossError(
            absl::StrCat(what, ": expert_key_prefix must be a non-empty string"));
      }
      const std::string json = formats::torch::ValueToJson(*light).dump();
      auto [it, inserted] = by_prefix.try_emplace(prefix->str(), light, json);
      if (!inserted && it->second.second != json) {
        return absl::FailedPreconditionError(
            absl::StrCat(what, ": AutoEP metadata for '", prefix->str(),
                         "' disagrees with an earlier model file"));
      }
      if (inserted) ValueArena::Append(out, light);
    }
  }
  return out;
}

// The model file re-saved with universal_checkpoint_info[expert_parameter_patterns,
// ds_autoep_layers].
absl::StatusOr<PlanFile> RewriteModelFile(const CheckpointIndex& index, int fi, ValueArena& arena,
                                          const StorageLocator& locator, absl::string_view pattern,
                                          const Value* layers) {
  const CheckpointFile& file = index.files[fi];
  UCP_ASSIGN_OR_RETURN(const Value* root, ids::AsDict(&file.root(), file.path));
  Value* new_root = CopyDict(arena, *root);
  const Value* old_info = root->Get(keys::kUniversalCheckpointInfo);
  Value* info = arena.Dict();
  if (old_info != nullptr) {
    UCP_ASSIGN_OR_RETURN(
        const Value* d,
        ids::AsDict(old_info, absl::StrCat(file.path, ": ", keys::kUniversalCheckpointInfo)));
    info = CopyDict(arena, *d);
  }
  SetOrReplace(arena, info, keys::kExpertParameterPatterns,
               arena.List({arena.Str(std::string(pattern))}));
  SetOrReplace(arena, info, keys::kDsAutoepLayers, layers);
  SetOrReplace(arena, new_root, keys::kUniversalCheckpointInfo, info);
  absl::StatusOr<PlanFile> out =
      FileFromTree(file.basename, FileRole::kModelRewrite, *new_root, locator);
  if (!out.ok()) return WithContext(out.status(), file.path);
  return out;
}

}  // namespace

absl::StatusOr<StorageLocator> StorageLocator::Build(const CheckpointIndex& index) {
  StorageLocator out;
  out.origin_ = index.dir.tag_dir;
  for (int fi = 0; fi < static_cast<int>(index.files.size()); ++fi) {
    UCP_RETURN_IF_ERROR(AddStorageRuns(*index.files[fi].torch, fi, &out.runs_));
  }
  return out;
}

absl::StatusOr<PlanFile> FileFromTree(std::string path, FileRole role, const Value& root,
                                      const StorageLocator& locator) {
  return StorageFrames(nullptr, &locator.runs(), &locator.origin())
      .Frame(std::move(path), role, root);
}

PlanFile CopyOfFile(const CheckpointIndex& index, int file, FileRole role) {
  const uint64_t size = index.files[file].torch->zip().source().Size();
  PlanFile f;
  f.path = index.files[file].basename;
  f.role = role;
  f.size = size;
  Region r{0, size, {}};
  if (size > 0) r.ops.push_back(CopyOp{file, 0, size, 0});
  f.regions.push_back(std::move(r));
  return f;
}

absl::StatusOr<PlanFile> OptimizerStateFile(const CheckpointIndex& index, ValueArena& arena,
                                            const StorageLocator& locator) {
  const Value& osd = index.optimizer_state_dict();
  const std::string what =
      absl::StrCat(index.optim_file(0).path, ": ",
                   index.kind.zero_stage == 0 ? keys::kOptimizer : keys::kOptimizerStateDict);
  Value* out = nullptr;
  const Value* param_groups = nullptr;
  if (index.kind.zero_stage == 0) {
    // No ZeRO wrapper state: what the ZeRO-1/2 loader needs (ds_version, then param_groups).
    UCP_ASSIGN_OR_RETURN(param_groups,
                         ids::Require(index.base_optimizer_state(), keys::kParamGroups, what));
    out = arena.Dict();
    const Value* version = index.model_file().root().Get(keys::kDsVersion);
    if (version != nullptr) arena.SetItem(out, keys::kDsVersion, version);
  } else if (index.kind.zero_stage == 3) {
    // The whole optimizer_state_dict of the first shard, plus a top-level param_groups.
    UCP_ASSIGN_OR_RETURN(const Value* inner, ids::Require(osd, keys::kOptimizerStateDict, what));
    UCP_ASSIGN_OR_RETURN(param_groups, ids::Require(*inner, keys::kParamGroups, what));
    out = CopyDict(arena, osd);
  } else {
    // Rank 0's state minus the sharded entries, paddings cleared, partition counts set to dp.
    UCP_ASSIGN_OR_RETURN(const Value* base, ids::Require(osd, keys::kBaseOptimizerState, what));
    UCP_ASSIGN_OR_RETURN(param_groups, ids::Require(*base, keys::kParamGroups, what));
    out = arena.Dict();
    for (const auto& [k, v] : osd.entries()) {
      if (IsKey(k, keys::kBaseOptimizerState) || IsKey(k, keys::kParamSliceMappings) ||
          IsKey(k, keys::kSinglePartitionOfFp32Groups)) {
        continue;
      }
      const Value* value = v;
      if (IsKey(k, keys::kGroupPaddings) && Truthy(v)) {
        UCP_ASSIGN_OR_RETURN(
            value, RepeatedInts(arena, v, 0, absl::StrCat(what, ".", keys::kGroupPaddings)));
      } else if (IsKey(k, keys::kPartitionCount) && Truthy(v)) {
        UCP_ASSIGN_OR_RETURN(value, RepeatedInts(arena, v, index.topology.dp,
                                                 absl::StrCat(what, ".", keys::kPartitionCount)));
      }
      ValueArena::SetItem(out, k, value);
    }
  }
  SetOrReplace(arena, out, keys::kParamGroups, param_groups);
  absl::StatusOr<PlanFile> f =
      FileFromTree(ucp::OptimizerStatePath(), FileRole::kOptimizerState, *out, locator);
  if (!f.ok()) return WithContext(f.status(), index.optim_file(0).path);
  return f;
}

absl::Status AddModelFiles(const CheckpointIndex& index, ValueArena& arena,
                           const StorageLocator& locator, Plan* plan) {
  const bool autoep = !index.autoep_layers.empty();
  if (index.kind.zero_stage <= 2) {
    const Value* layers = nullptr;
    if (autoep) {
      UCP_ASSIGN_OR_RETURN(layers, AggregatedAutoepMetadata(index, arena));
    }
    for (int fi : index.model_files) {
      if (!autoep) {
        plan->files.push_back(CopyOfFile(index, fi, FileRole::kModelCopy));
        continue;
      }
      UCP_ASSIGN_OR_RETURN(PlanFile f, RewriteModelFile(index, fi, arena, locator,
                                                        keys::kUcpExpertPatternZero12, layers));
      plan->files.push_back(std::move(f));
    }
    return absl::OkStatus();
  }
  // ZeRO-3: every non-expert model-states file, each with its own AutoEP metadata.
  for (int fi = 0; fi < static_cast<int>(index.files.size()); ++fi) {
    const formats::deepspeed::FileKind kind = index.files[fi].name.kind;
    if (kind != formats::deepspeed::FileKind::kZeroModelStates &&
        kind != formats::deepspeed::FileKind::kModelStates)
      continue;
    if (!autoep) {
      plan->files.push_back(CopyOfFile(index, fi, FileRole::kModelCopy));
      continue;
    }
    const Value* layers = AutoepMetadata(index.files[fi].root());
    UCP_ASSIGN_OR_RETURN(PlanFile f,
                         RewriteModelFile(index, fi, arena, locator, keys::kUcpExpertPatternZero3,
                                          layers != nullptr ? layers : arena.None()));
    plan->files.push_back(std::move(f));
  }
  return absl::OkStatus();
}

}  // namespace ucp::converters::sinks::internal_ucp_sink
