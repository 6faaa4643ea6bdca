#include "converters/plan/tree_edit.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/value_access.h"

namespace ucp::converters::plan {

namespace keys = formats::deepspeed::keys;
namespace ids = formats::deepspeed;
using formats::torch::ValueKind;

Value* CopyDict(ValueArena& arena, const Value& src) {
  Value* out = src.is(ValueKind::kOrderedDict) ? arena.OrderedDict() : arena.Dict();
  for (const auto& [k, v] : src.entries()) ValueArena::SetItem(out, k, v);
  if (src.is(ValueKind::kOrderedDict) && src.state() != nullptr)
    ValueArena::SetState(out, src.state());
  return out;
}

void SetOrReplace(ValueArena& arena, Value* dict, absl::string_view key, const Value* value) {
  const auto entries = dict->entries();
  for (size_t i = 0; i < entries.size(); ++i) {
    if (IsKey(entries[i].first, key)) {
      ValueArena::ReplaceValue(dict, i, value);
      return;
    }
  }
  arena.SetItem(dict, key, value);
}

bool IsKey(const Value* k, absl::string_view key) {
  return k->is(ValueKind::kStr) && k->str() == key;
}

absl::StatusOr<const Value*> RewriteAutoepLayers(ValueArena& arena, const Value* layers, int64_t ep,
                                                 int64_t edp, int64_t ep_rank, int64_t edp_rank,
                                                 absl::string_view what) {
  UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> items, ids::AsSequence(layers, what));
  Value* out = arena.List();
  for (const Value* item : items) {
    UCP_ASSIGN_OR_RETURN(const Value* d, ids::AsDict(item, what));
    UCP_ASSIGN_OR_RETURN(const Value* nv, ids::Require(*d, keys::kNumExperts, what));
    UCP_ASSIGN_OR_RETURN(int64_t num_experts, ids::AsIntIn(nv, 1, int64_t{1} << 30, what));
    if (num_experts % ep != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": num_experts ", num_experts, " is not divisible by the target autoep_size ", ep));
    }
    const int64_t local = num_experts / ep;
    Value* layer = CopyDict(arena, *d);
    SetOrReplace(arena, layer, keys::kNumLocalExperts, arena.Int(local));
    SetOrReplace(arena, layer, keys::kEpSize, arena.Int(ep));
    SetOrReplace(arena, layer, keys::kEpGroupName, arena.Str(absl::StrCat("ep_size_", ep)));
    SetOrReplace(arena, layer, keys::kEpRank, arena.Int(ep_rank));
    SetOrReplace(arena, layer, keys::kExpertDataParallelRank, arena.Int(edp_rank));
    SetOrReplace(arena, layer, keys::kExpertDataParallelWorldSize, arena.Int(edp));
    SetOrReplace(arena, layer, keys::kGlobalExpertStart, arena.Int(ep_rank * local));
    SetOrReplace(arena, layer, keys::kGlobalExpertEnd, arena.Int((ep_rank + 1) * local));
    ValueArena::Append(out, layer);
  }
  return out;
}

const Value* TorchSize(ValueArena& arena, const Shape& shape) {
  std::vector<const Value*> dims;
  for (int d = 0; d < shape.rank(); ++d) dims.push_back(arena.Int(shape.dim(d)));
  return arena.Object(arena.Global("torch", "Size"), arena.Tuple({arena.Tuple(dims)}),
                      Value::Construction::kReduce);
}

const Value* ParamShapeValue(ValueArena& arena, const Shape& shape, bool tuple) {
  if (!tuple) return TorchSize(arena, shape);
  std::vector<const Value*> dims;
  for (int d = 0; d < shape.rank(); ++d) dims.push_back(arena.Int(shape.dim(d)));
  return arena.Tuple(dims);
}

absl::StatusOr<const Value*> RewriteExpertParamShapes(
    ValueArena& arena, const Value* shapes,
    const absl::flat_hash_map<std::string, ExpertShape>& experts, int64_t ep,
    absl::string_view what) {
  namespace ids = formats::deepspeed;
  UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> groups, ids::AsSequence(shapes, what));
  Value* out = arena.List();
  for (const Value* g : groups) {
    UCP_ASSIGN_OR_RETURN(const Value* gd, ids::AsDict(g, what));
    Value* ng = CopyDict(arena, *gd);
    for (size_t i = 0; i < gd->entries().size(); ++i) {
      const auto& [k, v] = gd->entries()[i];
      auto it = experts.find(k->is(formats::torch::ValueKind::kStr) ? k->str() : std::string());
      if (it == experts.end()) continue;
      std::vector<const Value*> dims;
      dims.push_back(arena.Int(it->second.num_experts / ep));
      for (int d = 1; d < it->second.shape.rank(); ++d)
        dims.push_back(arena.Int(it->second.shape.dim(d)));
      const Value* tuple = arena.Tuple(dims);
      const Value* nv = tuple;
      if (v->is(formats::torch::ValueKind::kList)) nv = arena.List(dims);
      if (v->is(formats::torch::ValueKind::kObject)) {
        nv = arena.Object(v->cls(), arena.Tuple({tuple}), v->construction());
      }
      ValueArena::ReplaceValue(ng, i, nv);
    }
    ValueArena::Append(out, ng);
  }
  return out;
}

}  // namespace ucp::converters::plan
