// Typed reads of pickled DeepSpeed values (formats/torch value trees). Every accessor checks the
// node's kind and returns DataLoss naming `what` (a key path such as "optimizer_state_dict.
// partition_count[1]") when the file holds something else; callers prefix the file name.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "formats/base/shape.h"
#include "formats/torch/pickle_value.h"

namespace ucp::formats::deepspeed {

using formats::torch::TensorRef;
using formats::torch::Value;
using formats::torch::ValueKind;

// Largest count (ranks, groups, experts) ucp accepts from a file before treating it as hostile.
inline constexpr int64_t kMaxCount = int64_t{1} << 24;

// dict[key]; DataLoss "missing key" when absent or when `dict` is not a dict.
absl::StatusOr<const Value*> Require(const Value& dict, absl::string_view key,
                                     absl::string_view what);
// dict[int key] for dicts keyed by ints (torch optimizer `state`); nullptr when absent.
const Value* GetByInt(const Value& dict, int64_t key);
// True for a present value that is neither None nor an empty container.
bool IsSet(const Value* v);

absl::StatusOr<int64_t> AsInt(const Value* v, absl::string_view what);
// AsInt, also checked to lie in [lo, hi].
absl::StatusOr<int64_t> AsIntIn(const Value* v, int64_t lo, int64_t hi, absl::string_view what);
absl::StatusOr<bool> AsBool(const Value* v, absl::string_view what);
absl::StatusOr<double> AsNumber(const Value* v, absl::string_view what);  // int or float
absl::StatusOr<std::string> AsStr(const Value* v, absl::string_view what);
// Items of a list or tuple.
absl::StatusOr<absl::Span<const Value* const>> AsSequence(const Value* v, absl::string_view what);
absl::StatusOr<const Value*> AsDict(const Value* v, absl::string_view what);
absl::StatusOr<std::vector<std::string>> AsStrList(const Value* v, absl::string_view what);
absl::StatusOr<std::vector<int64_t>> AsIntList(const Value* v, absl::string_view what);
// A tensor; also checks it is 1-D and contiguous when `flat` is set.
absl::StatusOr<const TensorRef*> AsTensor(const Value* v, absl::string_view what,
                                          bool flat = false);
// torch.Size(...), or a plain tuple / list of non-negative ints (AutoEP param_shapes).
absl::StatusOr<Shape> AsShape(const Value* v, absl::string_view what);

// ZeroStageEnum pickled by value (ZeroStageEnum(2)) or by name (getattr(ZeroStageEnum,
// 'gradients')), or a plain int. Returns 0..3.
absl::StatusOr<int> AsZeroStage(const Value* v, absl::string_view what);

struct FragmentAddress {
  int64_t numel = 0;
  int64_t start = 0;
};
// deepspeed.utils.tensor_fragment.fragment_address: a dataclass (BUILD {'numel', 'start'}) or a
// (numel, start) tuple of constructor arguments.
absl::StatusOr<FragmentAddress> AsFragmentAddress(const Value* v, absl::string_view what);

// A short rendering for error messages ("5", "'adam'", "tensor f32 [3]", "dict").
std::string Describe(const Value* v);

}  // namespace ucp::formats::deepspeed
