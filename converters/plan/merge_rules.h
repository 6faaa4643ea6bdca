// MergeRules: how ds_to_universal merges the TP slices of a ZeRO-1/2 parameter and shapes the
// dict of its UCP files from the checkpoint's universal_checkpoint_info patterns
// (deepspeed-formats.md §5.1, §5.2, §5.2.1), evaluated exactly as DeepSpeed's merge_tp_slices does:
//   0. parameter_with_sub_params patterns are matched first (the first match is marked used);
//   1. the first list that matches, in this order: tp_replicated (→ {param}, slice 0),
//      parameter_to_average (→ {param}, mean of the slices), parameter_with_2_sub_params_cat_dim_0
//      (→ {cat_dim: 0, param_n_sub_params: 2, param}, torch.chunk halves), then a matched
//      sub-parameter pattern (→ {sub_param_shape: SubparamShape, param}, per-rank widths), else
//      row parallelism decides {cat_dim: 1 | 0, param};
//   2. vocabulary patterns then add vocab_tensor: True and keep only original_vocab_size rows (a
//      view: the storage keeps every row).
// The result carries the TpLayout (ucp/tp_layout.h) that moves the slices' elements into the merged
// tensor. Lists are consulted lazily in that order, and only a consulted list that matches counts
// as "used"; strict mode fails when a pattern was used by no parameter (Unused()). Patterns are
// Python regular expressions applied with re.match (anchored at the start only); ucp runs them as
// ECMAScript regexes (std::regex, kept inside merge_rules.cc), which agree for the patterns
// DeepSpeed and Megatron write.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "formats/base/shape.h"
#include "ucp/tp_layout.h"

namespace ucp::converters::plan::internal_plan {

// The dict keys of one parameter's files and the shape of its tensor.
struct ParamKeys {
  std::optional<int64_t> cat_dim;
  std::optional<int64_t> n_sub_params;
  bool vocab_tensor = false;
  Shape shape;  // the view's shape (vocabulary: the first original_vocab_size rows)
  ucp::TpLayout
      layout;  // slices → merged tensor; layout.view == shape, layout.merged = its storage
  // Sub-parameter patterns: the fields of the SubparamShape to write (DeepSpeed re-saves the
  // parameter_with_sub_params entry, the shape normalised for legacy counts).
  const formats::torch::Value* sub_param_patterns = nullptr;
  const formats::torch::Value* sub_param_shape = nullptr;
  int64_t sub_param_partition_dim = 0;
  std::optional<std::vector<int64_t>>
      legacy_sub_param_sizes;  // replaces shape[partition_dim] when set
  bool is_sub_params() const { return sub_param_patterns != nullptr; }
};

class MergeRules {
 public:
  // InvalidArgument for a pattern that is not a valid regular expression; DataLoss for malformed
  // lists. `info` may be absent (no patterns).
  static absl::StatusOr<MergeRules> Create(const deepspeed::UniversalCheckpointInfo& info);

  // The keys and merge layout of parameter `name` whose TP ranks hold slices of `rank_shapes`
  // (param_shapes of each MP rank). FailedPrecondition when two patterns of one list match, a
  // vocabulary parameter lacks original_vocab_size or is 1-D, or the slices cannot be merged as
  // the rule says (shapes, sub-parameter widths), naming the parameter.
  absl::StatusOr<ParamKeys> ForParam(const std::string& name, absl::Span<const Shape> rank_shapes);
  // tp = 1.
  absl::StatusOr<ParamKeys> ForParam(const std::string& name, const Shape& shape) {
    return ForParam(name, absl::MakeConstSpan(&shape, 1));
  }

  // Patterns that no parameter used, sorted (DeepSpeed asserts there are none unless --no_strict).
  std::vector<std::string> Unused() const;
  bool any_param_seen() const { return any_param_seen_; }

 private:
  struct Pattern;  // the text and its compiled std::regex
  using PatternList = std::vector<std::shared_ptr<const Pattern>>;
  static absl::StatusOr<PatternList> Compile(const std::vector<std::string>& patterns);
  // The one pattern of `list` matching `name` (marked used), nullptr if none.
  absl::StatusOr<const Pattern*> Match(const PatternList& list, const std::string& name,
                                       absl::string_view what);

  struct SubParams {  // one parameter_with_sub_params entry
    PatternList patterns;
    const formats::torch::Value* patterns_value = nullptr;
    const formats::torch::Value* shape = nullptr;  // list/tuple of ints and int tuples
    int64_t partition_dim = 0;
  };
  // The sub-parameter cut of a matched parameter (§5.2.1), filling the SubparamShape fields.
  absl::Status SubParamCut(const std::string& name, const SubParams& sub, const Pattern& pattern,
                           absl::Span<const Shape> rank_shapes, ucp::TpCut* cut,
                           std::vector<Shape>* views, ParamKeys* keys) const;

  PatternList replicated_, average_, two_sub_params_, row_parallel_, vocabulary_;
  std::vector<SubParams> sub_params_;
  std::optional<int64_t> original_vocab_size_;
  double version_ = 0.0;
  const formats::torch::Value* shard_widths_ = nullptr;  // sub_param_shard_widths
  absl::btree_set<std::string> all_, used_;
  bool any_param_seen_ = false;
};

}  // namespace ucp::converters::plan::internal_plan
