// MergeRules: how ds_to_universal shapes the per-parameter dict of a ZeRO-1/2 UCP file from the
// checkpoint's universal_checkpoint_info patterns (deepspeed-formats.md §5.1, §5.2), evaluated
// exactly as DeepSpeed's merge_tp_slices does for one TP rank (tp = 1):
//   1. parameter_with_sub_params patterns (first match wins) - not supported: Unimplemented;
//   2. else the first list that matches, in this order: tp_replicated (→ {param}),
//      parameter_to_average (→ {param}), parameter_with_2_sub_params_cat_dim_0
//      (→ {cat_dim: 0, param_n_sub_params: 2, param}), else row parallelism decides
//      {cat_dim: 1 | 0, param};
//   3. vocabulary patterns then add vocab_tensor: True and keep only original_vocab_size rows (a
//      view: the storage keeps every row).
// Lists are consulted lazily in that order, and only a consulted list that matches counts as
// "used"; strict mode fails when a pattern was used by no parameter (Unused()). Patterns are
// Python regular expressions applied with re.match (anchored at the start only); ucp runs them as
// ECMAScript regexes (std::regex, kept inside merge_rules.cc), which agree for the patterns
// DeepSpeed and Megatron write.
// With tp = 1 every rule keeps the tensor's bytes as they are, except the average (sum / 1 turns
// -0.0 into +0.0 in DeepSpeed; ucp keeps the bytes).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "formats/base/shape.h"

namespace ucp::converters::plan::internal_plan {

// The dict keys of one parameter's files and the shape of its tensor.
struct ParamKeys {
  std::optional<int64_t> cat_dim;
  std::optional<int64_t> n_sub_params;
  bool vocab_tensor = false;
  Shape shape;  // the view's shape (vocabulary: the first original_vocab_size rows)
};

class MergeRules {
 public:
  // InvalidArgument for a pattern that is not a valid regular expression; DataLoss for malformed
  // lists. `info` may be absent (no patterns).
  static absl::StatusOr<MergeRules> Create(const deepspeed::UniversalCheckpointInfo& info);

  // The keys for parameter `name` of shape `shape` (its TP-merged shape). Unimplemented for
  // sub-parameter patterns; FailedPrecondition when two patterns of one list match, or a
  // vocabulary parameter lacks original_vocab_size or is 1-D.
  absl::StatusOr<ParamKeys> ForParam(const std::string& name, const Shape& shape);

  // Patterns that no parameter used, sorted (DeepSpeed asserts there are none unless --no_strict).
  std::vector<std::string> Unused() const;
  bool any_param_seen() const { return any_param_seen_; }

 private:
  struct Pattern;  // the text and its compiled std::regex
  using PatternList = std::vector<std::shared_ptr<const Pattern>>;
  static absl::StatusOr<PatternList> Compile(const std::vector<std::string>& patterns);
  // The one pattern of `list` matching `name` (marked used), nullptr if none.
  absl::StatusOr<const Pattern*> Match(const PatternList& list, const std::string& name, absl::string_view what);

  PatternList replicated_, average_, two_sub_params_, row_parallel_, vocabulary_, sub_params_;
  std::optional<int64_t> original_vocab_size_;
  absl::btree_set<std::string> all_, used_;
  bool any_param_seen_ = false;
};

}  // namespace ucp::converters::plan::internal_plan
