// The Universal Checkpoint (UCP) directory in DeepSpeed's own layout (deepspeed-formats.md §5), as
// ds_to_universal.py writes it and DeepSpeed's `load_universal` reads it:
//
//   <out>/zero/<param>/{fp32,exp_avg,exp_avg_sq}.pt   one tensor each (§5.1, forms below)
//   <out>/zero/<param>/step.pt                          ZeRO-1/2 only: the raw step value
//   <out>/zero/optimizer_state.pt                       global optimizer state (§5.3)
//   <out>/<model states files>                          copied, or rewritten for AutoEP (§5.4)
//   <out>/ucp_manifest.json                             ucp's addition, written last (manifest.h)
//   <parent of out>/latest_universal                    basename(out), no newline
//
// This header owns the UCP side of those names and builds the value tree of a per-parameter state
// file. The tree references one new storage without bytes: writers stream the storage payload
// from the source fragments (torch_frame.h), so no tensor is ever materialised.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "formats/base/dtype.h"
#include "formats/base/shape.h"
#include "formats/torch/pickle_value.h"

namespace ucp {

using formats::torch::StorageRef;
using formats::torch::Value;
using formats::torch::ValueArena;

// --- Names (§5) ----------------------------------------------------------------------------------
inline constexpr absl::string_view kZeroDir = "zero";
inline constexpr absl::string_view kOptimizerStateFile = "optimizer_state.pt";
inline constexpr absl::string_view kLatestUniversalFile = "latest_universal";
inline constexpr absl::string_view kManifestFile = "ucp_manifest.json";
inline constexpr absl::string_view kFp32State = "fp32";
inline constexpr absl::string_view kExpAvgState = "exp_avg";
inline constexpr absl::string_view kExpAvgSqState = "exp_avg_sq";
inline constexpr absl::string_view kStepState = "step";

// Keys of the per-parameter dicts (§5.1).
inline constexpr absl::string_view kParamKey = "param";
inline constexpr absl::string_view kCatDimKey = "cat_dim";
inline constexpr absl::string_view kParamNSubParamsKey = "param_n_sub_params";
inline constexpr absl::string_view kVocabTensorKey = "vocab_tensor";
inline constexpr absl::string_view kIsExpertParamKey = "is_expert_param";
inline constexpr absl::string_view kEpNumExpertsKey = "ep_num_experts";

// InvalidArgument unless `name` can name one folder under zero/: not empty, not "." or "..", and
// without '/', '\\' or NUL (a name must not escape the output directory).
absl::Status ValidateParamName(absl::string_view name);
// "zero/<param>/<state>.pt".
std::string ParamStatePath(absl::string_view param, absl::string_view state);
// "zero/optimizer_state.pt".
std::string OptimizerStatePath();
// The archive root torch.save gives a file: its base name without the extension ("fp32").
std::string ArchiveRootFor(absl::string_view relative_path);

// How a per-parameter state file wraps its tensor (§5.1).
enum class ParamFileForm : uint8_t {
  kRawTensor,   // ZeRO-3 with tp = 1: the 1-D tensor itself
  kDict,        // ZeRO-1/2: {['cat_dim'], ['param_n_sub_params'], ['vocab_tensor'], 'param'}
  kExpertDict,  // AutoEP experts: {'param', 'cat_dim': 0, 'is_expert_param': True,
                // 'ep_num_experts'}
};

struct ParamStateSpec {
  ParamFileForm form = ParamFileForm::kDict;
  DType dtype = DType::kF32;
  Shape shape;                // the tensor's shape
  int64_t storage_numel = 0;  // elements stored; more than shape's for a vocabulary view (§5.1)
  bool requires_grad = false;
  // kDict entries written before 'param', each only when set, in this order.
  std::optional<int64_t> cat_dim = 0;
  std::optional<int64_t> n_sub_params = std::nullopt;
  bool vocab_tensor = false;
  // kDict: a SubparamShape object written as the first key 'sub_param_shape' (§5.1); cat_dim and
  // n_sub_params are then unset.
  const Value* sub_param_shape = nullptr;
  int64_t ep_num_experts = 0;  // kExpertDict
};

struct ParamStateTree {
  const Value* root = nullptr;
  const StorageRef* storage = nullptr;  // the tensor's storage, bytes not attached
};

// The value tree of one per-parameter file, built in `arena`: a contiguous tensor at storage
// offset 0 over a new "cpu" storage of spec.storage_numel elements. InvalidArgument when the
// shape has more elements than the storage, or a negative dimension.
absl::StatusOr<ParamStateTree> BuildParamStateTree(ValueArena& arena, const ParamStateSpec& spec);

}  // namespace ucp
