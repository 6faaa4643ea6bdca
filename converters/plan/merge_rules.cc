#include "converters/plan/merge_rules.h"

#include <algorithm>
#include <regex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "converters/deepspeed/deepspeed_keys.h"
#include "converters/deepspeed/value_access.h"
#include "formats/base/status.h"

namespace ucp::converters::plan::internal_plan {

namespace keys = deepspeed::keys;
namespace ids = deepspeed::internal_ds;
using formats::torch::Value;

struct MergeRules::Pattern {
  std::string text;
  std::regex re;

  // Python's re.match: anchored at the start, not at the end.
  bool Matches(const std::string& name) const {
    return std::regex_search(name, re, std::regex_constants::match_continuous);
  }
};

absl::StatusOr<MergeRules::PatternList> MergeRules::Compile(const std::vector<std::string>& patterns) {
  PatternList out;
  for (const std::string& p : patterns) {
    // std::regex reports bad patterns by throwing; nothing else here can throw.
    try {
      out.push_back(std::make_shared<const Pattern>(Pattern{p, std::regex(p, std::regex::ECMAScript)}));
    } catch (const std::regex_error& e) {
      return absl::InvalidArgumentError(absl::StrCat(keys::kUniversalCheckpointInfo, ": pattern '", p,
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
  std::vector<std::string> sub_params;
  if (info.sub_params != nullptr && !info.sub_params->is_none()) {
    const std::string what = absl::StrCat(keys::kUniversalCheckpointInfo, ".", keys::kParameterWithSubParams);
    UCP_ASSIGN_OR_RETURN(absl::Span<const Value* const> specs, ids::AsSequence(info.sub_params, what));
    for (const Value* spec : specs) {
      UCP_ASSIGN_OR_RETURN(const Value* patterns, ids::Require(*spec, "patterns", what));
      UCP_ASSIGN_OR_RETURN(std::vector<std::string> list, ids::AsStrList(patterns, what));
      sub_params.insert(sub_params.end(), list.begin(), list.end());
    }
  }
  UCP_ASSIGN_OR_RETURN(r.sub_params_, Compile(sub_params));
  r.original_vocab_size_ = info.original_vocab_size;
  for (const PatternList* list : {&r.replicated_, &r.average_, &r.two_sub_params_, &r.row_parallel_,
                                  &r.vocabulary_, &r.sub_params_}) {
    for (const auto& p : *list) r.all_.insert(p->text);
  }
  return r;
}

absl::StatusOr<const MergeRules::Pattern*> MergeRules::Match(const PatternList& list, const std::string& name,
                                                             absl::string_view what) {
  std::vector<const Pattern*> matched;
  for (const auto& p : list) {
    if (p->Matches(name)) matched.push_back(p.get());
  }
  if (matched.size() > 1) {
    std::vector<std::string> texts;
    for (const Pattern* p : matched) texts.push_back(p->text);
    return absl::FailedPreconditionError(absl::StrCat(keys::kUniversalCheckpointInfo, ".", what, ": parameter '",
                                                      name, "' matches more than one pattern: ",
                                                      absl::StrJoin(texts, ", ")));
  }
  if (matched.empty()) return nullptr;
  used_.insert(matched[0]->text);
  return matched[0];
}

absl::StatusOr<ParamKeys> MergeRules::ForParam(const std::string& name, const Shape& shape) {
  any_param_seen_ = true;
  for (const auto& p : sub_params_) {
    if (p->Matches(name)) {
      return absl::UnimplementedError(absl::StrCat(
          keys::kUniversalCheckpointInfo, ".", keys::kParameterWithSubParams, ": parameter '", name,
          "' matches sub-parameter pattern '", p->text, "'; writing SubparamShape files is not implemented"));
    }
  }
  ParamKeys k;
  k.shape = shape;
  UCP_ASSIGN_OR_RETURN(const Pattern* replicated, Match(replicated_, name, keys::kTpReplicatedParameterPatterns));
  const Pattern* average = nullptr;
  const Pattern* two_sub = nullptr;
  if (replicated == nullptr) {
    UCP_ASSIGN_OR_RETURN(average, Match(average_, name, keys::kParameterToAveragePatterns));
  }
  if (replicated == nullptr && average == nullptr) {
    UCP_ASSIGN_OR_RETURN(two_sub, Match(two_sub_params_, name, keys::kParameterWith2SubParamsCatDim0));
    if (two_sub != nullptr) {
      k.cat_dim = 0;
      k.n_sub_params = 2;
    } else {
      UCP_ASSIGN_OR_RETURN(const Pattern* row, Match(row_parallel_, name, keys::kParameterWithRowParallelismPatterns));
      k.cat_dim = row != nullptr ? 1 : 0;
      if (row != nullptr && shape.rank() < 2) {
        return absl::FailedPreconditionError(absl::StrCat("row-parallel parameter '", name, "' of shape ",
                                                          shape.ToString(), " has no dimension 1"));
      }
    }
  }
  UCP_ASSIGN_OR_RETURN(const Pattern* vocab, Match(vocabulary_, name, keys::kVocabularyParameterPatterns));
  if (vocab != nullptr) {
    if (!original_vocab_size_) {
      return absl::FailedPreconditionError(absl::StrCat(keys::kUniversalCheckpointInfo, ": vocabulary parameter '",
                                                        name, "' but no ", keys::kOriginalVocabSize));
    }
    if (shape.rank() < 2) {
      return absl::FailedPreconditionError(absl::StrCat("vocabulary parameter '", name, "' of shape ",
                                                        shape.ToString(), " cannot be sliced as [:n, :]"));
    }
    std::vector<int64_t> dims(shape.dims().begin(), shape.dims().end());
    dims[0] = std::min(dims[0], *original_vocab_size_);  // Python slicing clamps
    k.shape = Shape(std::move(dims));
    k.vocab_tensor = true;
  }
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
