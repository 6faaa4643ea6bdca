// Editing pickled value trees the way DeepSpeed's Python edits dicts, shared by the planners that
// re-save DeepSpeed files with changed keys (zero_to_ucp's state files, the ZeRO-1/2 and ZeRO-3
// reshard planners). Trees are immutable once built: edits make shallow copies in an arena.
#pragma once

#include <cstdint>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "formats/base/shape.h"
#include "formats/torch/pickle_value.h"

namespace ucp::converters::plan {

using formats::torch::Value;
using formats::torch::ValueArena;

// A shallow copy of a dict or OrderedDict: the same keys and value nodes, in order (an
// OrderedDict keeps its attribute state).
Value* CopyDict(ValueArena& arena, const Value& src);
// Python's d[key] = value: replaces in place (keeping the position) or appends.
void SetOrReplace(ValueArena& arena, Value* dict, absl::string_view key, const Value* value);
// True when the dict key `k` is the string `key`.
bool IsKey(const Value* k, absl::string_view key);

// ds_autoep_layers (deepspeed-formats.md §4.4) as the rank at (ep_rank, edp_rank) of an
// autoep_size `ep`, expert-DP size `edp` topology saves it: num_local_experts, ep_size,
// ep_group_name, the ranks and the rank's global expert range rewritten; other keys kept.
// InvalidArgument (naming `what`) when a layer's num_experts is not divisible by `ep`.
absl::StatusOr<const Value*> RewriteAutoepLayers(ValueArena& arena, const Value* layers, int64_t ep,
                                                 int64_t edp, int64_t ep_rank, int64_t edp_rank,
                                                 absl::string_view what);

// torch.Size(dims) as torch pickles it: REDUCE of torch.Size on a tuple of ints.
const Value* TorchSize(ValueArena& arena, const Shape& shape);
// A parameter's param_shapes entry: torch.Size, or a plain tuple of ints where DeepSpeed writes
// one (AutoEP engines: `tuple`).
const Value* ParamShapeValue(ValueArena& arena, const Shape& shape, bool tuple);

// An AutoEP expert parameter as param_shapes records it: all experts, the source's shape.
struct ExpertShape {
  int num_experts = 0;
  Shape shape;  // dims after the first are kept
};
// param_shapes (a list, one dict name → shape per group; torch.Size, tuple or list) with every
// entry named in `experts` EP-local at autoep_size `ep`: dim 0 = num_experts / ep, pickled in the
// form the entry had. Other entries are kept (the same nodes).
absl::StatusOr<const Value*> RewriteExpertParamShapes(
    ValueArena& arena, const Value* shapes,
    const absl::flat_hash_map<std::string, ExpertShape>& experts, int64_t ep,
    absl::string_view what);

}  // namespace ucp::converters::plan
