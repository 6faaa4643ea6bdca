#include "converters/plan/merge_rules.h"

#include <algorithm>
#include <regex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/value_access.h"

namespace ucp::converters::plan::internal_plan {

namespace keys = formats::deepspeed::keys;
namespace ids = formats::deepspeed;
using formats::torch::Value;

struct MergeRules::Pattern {
  std::string text;
  std::regex re;

  // Python's re.match: anchored at the start, not at the end.
  bool Matches(const std::string& name) const {
    return std::regex_search(name, re, std::regex_constants::match_continuous);
  }
};

absl::StatusOr<MergeRules::PatternList> MergeRules::Compile(
    const std::vector<std::string>& patterns) {
  PatternList out;
  for (const std::string& p : patterns) {
    // std::regex reports bad patterns by throwing; nothing else here can throw.
    try {
      out.push_back(
          std::make_shared<const Pattern>(Pattern{p, std::regex(p, std::regex::ECMAScript)}));
    } catch (const std::regex_error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(keys::kUniversalCheckpointInfo, ": pattern '", p,
                       "' is not a regular expression ucp can run: ", e.what()));
    }
  }
  return out;
}

absl::StatusOr<MergeRules> MergeRules::Create(const deepspeed::UniversalCheckpointInfo& info) {
  MergeRules r;
  UCP_ASSIGN_OR_RETURN(r.replicated_, Compile(info.tp_replicated_patterns));
  UCP_ASSIGN_OR_RETURN(r.average_, Compile(info.average_patterns));
  UCP_ASSIGN_OR_RETURN(r.two_sub_params_, Compile(info.two_sub_params_cat_dim0_patterns));
  UCP_ASSIGN_OR_RETURN(r.row_parallel_, Compile(info.row_parallel_patterns));
  UCP_ASSIGN_OR_RETURN(r.vocabulary_, Compile(info.vocabulary_patterns));
  if (info.sub_params != nullptr && !info.sub_params->is_none()) {
    const std::string what =
        absl::StrCat(keys::kUniversalCheckpointInfo, ".", keys::kParameterWithSubParams);
    UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> specs,
                         ids::AsSequence(info.sub_params, what));
    for (const Value* spec : specs) {
      SubParams sp;
      UCP_ASSIGN_OR_RETURN(sp.patterns_value, ids::Require(*spec, "patterns", what));
      UCP_ASSIGN_OR_RETURN(std::vector<std::string> list, ids::AsStrList(sp.patterns_value, what));
      UCP_ASSIGN_OR_RETURN(sp.patterns, Compile(list));
      UCP_ASSIGN_OR_RETURN(sp.shape, ids::Require(*spec, "shape", what));
      UCP_RETURN_IF_ERROR(ids::AsSequence(sp.shape, absl::StrCat(what, ".shape")).status());
      UCP_ASSIGN_OR_RETURN(const Value* dim, ids::Require(*spec, "partition_dim", what));
      UCP_ASSIGN_OR_RETURN(sp.partition_dim,
                           ids::AsIntIn(dim, 0, 64, absl::StrCat(what, ".partition_dim")));
      r.sub_params_.push_back(std::move(sp));
    }
  }
  r.version_ = info.version.value_or(0.0);
  r.shard_widths_ = info.sub_param_shard_widths;
  r.original_vocab_size_ = info.original_vocab_size;
  for (const PatternList* list :
       {&r.replicated_, &r.average_, &r.two_sub_params_, &r.row_parallel_, &r.vocabulary_}) {
    for (const auto& p : *list) r.all_.insert(p->text);
  }
  for (const SubParams& sp : r.sub_params_) {
    for (const auto& p : sp.patterns) r.all_.insert(p->text);
  }
  return r;
}

absl::StatusOr<const MergeRules::Pattern*> MergeRules::Match(const PatternList& list,
                                                             const std::string& name,
                                                             absl::string_view what) {
  std::vector<const Pattern*> matched;
  for (const auto& p : list) {
    if (p->Matches(name)) matched.push_back(p.get());
  }
  if (matched.size() > 1) {
    std::vector<std::string> texts;
    for (const Pattern* p : matched) texts.push_back(p->text);
    return absl::FailedPreconditionError(
        absl::StrCat(keys::kUniversalCheckpointInfo, ".", what, ": parameter '", name,
                     "' matches more than one pattern: ", absl::StrJoin(texts, ", ")));
  }
  if (matched.empty()) return nullptr;
  used_.insert(matched[0]->text);
  return matched[0];
}

namespace {

absl::Status Refuse(const std::string& name, absl::string_view why) {
  return absl::FailedPreconditionError(absl::StrCat("parameter '", name, "': ", why));
}

// int64 list of a list/tuple of ints.
absl::StatusOr<std::vector<int64_t>> Ints(const Value* v, const std::string& what) {
  UCP_ASSIGN_OR_RETURN(std::vector<int64_t> out, ids::AsIntList(v, what));
  for (int64_t x : out) {
    if (x < 0 || x > ids::kMaxCount * ids::kMaxCount)
      return absl::DataLossError(absl::StrCat(what, ": size ", x));
  }
  return out;
}

// A sub-parameter pattern's logical shape: tuple entries summed, partition_dim `pd` the sum of
// the sub-parameters' `sizes`, one -1 resolved from the `total` elements of the TP slices.
absl::StatusOr<std::vector<int64_t>> LogicalShape(const std::string& name,
                                                  absl::Span<const Value* const> spec, int64_t pd,
                                                  const std::vector<int64_t>& sizes, int64_t total,
                                                  const std::string& what) {
  std::vector<int64_t> logical;
  int placeholder = -1;
  int64_t known = 1;
  for (size_t d = 0; d < spec.size(); ++d) {
    int64_t v = 0;
    if (static_cast<int64_t>(d) == pd) {
      for (int64_t x : sizes) v += x;
    } else if (spec[d]->is_sequence()) {
      UCP_ASSIGN_OR_RETURN(std::vector<int64_t> xs, Ints(spec[d], what));
      for (int64_t x : xs) v += x;
    } else {
      UCP_ASSIGN_OR_RETURN(v, ids::AsIntIn(spec[d], -1, ids::kMaxCount * ids::kMaxCount, what));
    }
    if (v < 0) {
      if (placeholder >= 0)
        return Refuse(name, absl::StrCat(what, ": more than one -1 in its shape"));
      placeholder = static_cast<int>(d);
    } else {
      known *= v;
      if (known > ids::kMaxCount * ids::kMaxCount)
        return Refuse(name, absl::StrCat(what, ": shape too large"));
    }
    logical.push_back(v);
  }
  if (placeholder >= 0) {
    if (known <= 0 || total % known != 0) {
      return Refuse(name,
                    absl::StrCat(what, ": shape cannot be resolved for ", total, " elements"));
    }
    logical[placeholder] = total / known;
  }
  return logical;
}

}  // namespace

absl::Status MergeRules::SubParamCut(const std::string& name, const SubParams& sub,
                                     const Pattern& pattern, absl::Span<const Shape> rank_shapes,
                                     ucp::TpCut* cut, std::vector<Shape>* views,
                                     ParamKeys* keys) const {
  const int tp = static_cast<int>(rank_shapes.size());
  const std::string what = absl::StrCat(keys::kUniversalCheckpointInfo, ".",
                                        keys::kParameterWithSubParams, " '", pattern.text, "'");
  UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> spec, ids::AsSequence(sub.shape, what));
  const int64_t pd = sub.partition_dim;
  if (pd >= static_cast<int64_t>(spec.size())) {
    return Refuse(name, absl::StrCat(what, ": partition_dim ", pd, " outside shape of ",
                                     spec.size(), " entries"));
  }
  const bool tuple_sizes = spec[pd]->is_sequence();
  std::vector<int64_t> sizes;
  std::vector<std::vector<int64_t>> widths;
  if (version_ >= 0.4) {
    if (!tuple_sizes)
      return Refuse(name, absl::StrCat(what, ": version ", version_, " needs per-sub-param sizes"));
    UCP_ASSIGN_OR_RETURN(sizes, Ints(spec[pd], what));
    const Value* w = shard_widths_ != nullptr && shard_widths_->is_dict()
                         ? shard_widths_->Get(pattern.text)
                         : nullptr;
    if (w == nullptr) {
      return Refuse(
          name, absl::StrCat("universal checkpoint version ", version_, " records no ",
                             keys::kSubParamShardWidths, " for its pattern '", pattern.text, "'"));
    }
    const std::string wwhat = absl::StrCat(keys::kSubParamShardWidths, "['", pattern.text, "']");
    UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> rows, ids::AsSequence(w, wwhat));
    for (const Value* row : rows) {
      UCP_ASSIGN_OR_RETURN(std::vector<int64_t> ws, Ints(row, wwhat));
      widths.push_back(std::move(ws));
    }
  } else {
    if (tuple_sizes) {
      UCP_ASSIGN_OR_RETURN(sizes, Ints(spec[pd], what));
    } else {
      // Legacy: an int count of equal sub-parameters over the full partition dimension.
      UCP_ASSIGN_OR_RETURN(int64_t count, ids::AsIntIn(spec[pd], 1, ids::kMaxCount, what));
      int64_t full = 0;
      for (const Shape& s : rank_shapes) {
        if (s.rank() <= pd)
          return Refuse(name, absl::StrCat("slice ", s.ToString(), " has no dimension ", pd));
        full += s.dim(static_cast<int>(pd));
      }
      if (full % count != 0) {
        return Refuse(
            name, absl::StrCat("legacy sub-parameter count ", count, " does not divide ", full));
      }
      sizes.assign(count, full / count);
      keys->legacy_sub_param_sizes = sizes;
    }
    for (int64_t size : sizes) {
      if (size % tp != 0) {
        return Refuse(name, absl::StrCat("sub-parameter size ", size, " is not divisible by tp ",
                                         tp, " and version ", version_, " predates ",
                                         keys::kSubParamShardWidths));
      }
      widths.push_back(std::vector<int64_t>(tp, size / tp));
    }
  }
  if (widths.size() != sizes.size()) {
    return Refuse(name, absl::StrCat(widths.size(), " shard width entries for ", sizes.size(),
                                     " sub-parameters"));
  }
  for (size_t k = 0; k < sizes.size(); ++k) {
    int64_t sum = 0;
    for (int64_t w : widths[k]) sum += w;
    if (static_cast<int>(widths[k].size()) != tp || sum != sizes[k]) {
      return Refuse(
          name, absl::StrCat("shard widths of sub-parameter ", k, " (", widths[k].size(), " for ",
                             tp, " ranks) sum to ", sum, ", expected ", sizes[k]));
    }
  }
  int64_t total = 0;
  for (const Shape& s : rank_shapes) total += *s.NumElements();  // checked by the index
  UCP_ASSIGN_OR_RETURN(std::vector<int64_t> logical,
                       LogicalShape(name, spec, pd, sizes, total, what));
  for (int r = 0; r < tp; ++r) {
    std::vector<int64_t> dims = logical;
    dims[pd] = 0;
    for (const auto& w : widths) dims[pd] += w[r];
    Shape view(std::move(dims));
    absl::StatusOr<int64_t> n = view.NumElements();
    if (!n.ok() || *n != *rank_shapes[r].NumElements()) {
      return Refuse(name, absl::StrCat("TP rank ", r, " holds ", rank_shapes[r].ToString(),
                                       "; its shard widths describe ", view.ToString()));
    }
    views->push_back(std::move(view));
  }
  cut->kind = ucp::TpMergeKind::kConcat;
  cut->dim = static_cast<int>(pd);
  cut->widths = std::move(widths);
  keys->sub_param_patterns = sub.patterns_value;
  keys->sub_param_shape = sub.shape;
  keys->sub_param_partition_dim = pd;
  return absl::OkStatus();
}

absl::StatusOr<ParamKeys> MergeRules::ForParam(const std::string& name,
                                               absl::Span<const Shape> rank_shapes) {
  any_param_seen_ = true;
  if (rank_shapes.empty())
    return absl::InternalError(absl::StrCat("parameter '", name, "' without TP slices"));
  // DeepSpeed matches sub-parameter patterns before anything else (first match wins, marked used).
  const SubParams* sub = nullptr;
  const Pattern* sub_pattern = nullptr;
  for (const SubParams& sp : sub_params_) {
    for (const auto& p : sp.patterns) {
      if (sub == nullptr && p->Matches(name)) {
        sub = &sp;
        sub_pattern = p.get();
        used_.insert(p->text);
      }
    }
  }
  ParamKeys k;
  ucp::TpCut cut;
  std::vector<Shape> views(rank_shapes.begin(), rank_shapes.end());
  UCP_ASSIGN_OR_RETURN(const Pattern* replicated,
                       Match(replicated_, name, keys::kTpReplicatedParameterPatterns));
  const Pattern* average = nullptr;
  const Pattern* two_sub = nullptr;
  if (replicated != nullptr) {
    cut.kind = ucp::TpMergeKind::kReplicated;
  } else {
    UCP_ASSIGN_OR_RETURN(average, Match(average_, name, keys::kParameterToAveragePatterns));
  }
  if (average != nullptr) cut.kind = ucp::TpMergeKind::kAverage;
  if (replicated == nullptr && average == nullptr) {
    UCP_ASSIGN_OR_RETURN(two_sub,
                         Match(two_sub_params_, name, keys::kParameterWith2SubParamsCatDim0));
    if (two_sub != nullptr) {
      k.cat_dim = 0;
      k.n_sub_params = 2;
      absl::StatusOr<std::vector<std::vector<int64_t>>> widths =
          ucp::TwoSubParamWidths(rank_shapes);
      if (!widths.ok()) return Refuse(name, widths.status().message());
      cut.widths = *std::move(widths);
    } else if (sub != nullptr) {
      views.clear();
      UCP_RETURN_IF_ERROR(SubParamCut(name, *sub, *sub_pattern, rank_shapes, &cut, &views, &k));
    } else {
      UCP_ASSIGN_OR_RETURN(const Pattern* row,
                           Match(row_parallel_, name, keys::kParameterWithRowParallelismPatterns));
      k.cat_dim = row != nullptr ? 1 : 0;
      cut.dim = row != nullptr ? 1 : 0;
      if (row != nullptr && rank_shapes[0].rank() < 2) {
        return absl::FailedPreconditionError(absl::StrCat("row-parallel parameter '", name,
                                                          "' of shape ", rank_shapes[0].ToString(),
                                                          " has no dimension 1"));
      }
    }
  }
  UCP_ASSIGN_OR_RETURN(const Pattern* vocab,
                       Match(vocabulary_, name, keys::kVocabularyParameterPatterns));
  if (vocab != nullptr) {
    if (!original_vocab_size_) {
      return absl::FailedPreconditionError(absl::StrCat(keys::kUniversalCheckpointInfo,
                                                        ": vocabulary parameter '", name,
                                                        "' but no ", keys::kOriginalVocabSize));
    }
    if (views[0].rank() < 2) {
      return absl::FailedPreconditionError(absl::StrCat("vocabulary parameter '", name,
                                                        "' of shape ", views[0].ToString(),
                                                        " cannot be sliced as [:n, :]"));
    }
    cut.view_rows = *original_vocab_size_;
    k.vocab_tensor = true;
  }
  absl::StatusOr<ucp::TpLayout> layout = ucp::Merge(views, cut);
  if (!layout.ok()) return Refuse(name, layout.status().message());
  k.layout = *std::move(layout);
  k.shape = k.layout.view;
  return k;
}

std::vector<std::string> MergeRules::Unused() const {
  std::vector<std::string> out;
  for (const std::string& p : all_) {
    if (!used_.contains(p)) out.push_back(p);
  }
  return out;
}

}  // namespace ucp::converters::plan::internal_plan
