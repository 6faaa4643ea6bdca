// Checks of a Universal Checkpoint folder in DeepSpeed's layout (deepspeed-formats.md §5;
// verify.h): every zero/<param>/ folder has fp32 / exp_avg / exp_avg_sq of one shape and step.pt
// where the other parameters have one, with one value; the model files' param_shapes name exactly
// the zero/ folders, with matching element counts; optimizer_state.pt has one param group per
// param_shapes group.
#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "converters/verify/verify_internal.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/file_names.h"
#include "formats/deepspeed/value_access.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::verify::internal_verify {
namespace {

namespace fs = std::filesystem;
namespace ds = ::ucp::converters::deepspeed;
namespace dsf = ::ucp::formats::deepspeed;
namespace keys = ::ucp::formats::deepspeed::keys;
using formats::torch::TorchFile;
using formats::torch::Value;
using formats::torch::ValueKind;

struct StateTensor {
  Shape shape;
  DType dtype = DType::kF32;
  bool expert = false;  // a dict with is_expert_param: True
  bool raw = false;     // the tensor itself (ZeRO-3), not a dict
};

// The tensor of a per-parameter state file (§5.1): the root, or the root dict's 'param'.
std::optional<StateTensor> ParamTensor(const TorchFile& file) {
  const Value& root = file.root();
  StateTensor t;
  const Value* tensor = &root;
  if (root.is_dict()) {
    tensor = root.Get(ucp::kParamKey);
    const Value* expert = root.Get(ucp::kIsExpertParamKey);
    t.expert = expert != nullptr && expert->is(ValueKind::kBool) && expert->bool_value();
  } else {
    t.raw = true;
  }
  if (tensor == nullptr || !tensor->is(ValueKind::kTensor)) return std::nullopt;
  t.shape = tensor->tensor().shape;
  t.dtype = tensor->tensor().dtype;
  return t;
}

std::optional<TorchFile> OpenChecked(const std::string& dir, const std::string& relative,
                                     const VerifyOptions& options, VerifyReport& report) {
  if (!CheckTorchFile(dir, relative, options, report)) return std::nullopt;
  absl::StatusOr<TorchFile> file = TorchFile::OpenPath((fs::path(dir) / relative).string());
  if (!file.ok()) return std::nullopt;
  return *std::move(file);
}

struct ParamFacts {
  std::optional<StateTensor> fp32;
  std::optional<double> step;
  bool has_step = false;
};

ParamFacts CheckParamFolder(const std::string& dir, const std::string& name,
                            const VerifyOptions& options, VerifyReport& report) {
  ParamFacts facts;
  std::optional<StateTensor> first;
  std::string first_state;
  for (absl::string_view state : {ucp::kFp32State, ucp::kExpAvgState, ucp::kExpAvgSqState}) {
    const std::string relative = ucp::ParamStatePath(name, state);
    std::error_code ec;
    if (!fs::exists(fs::path(dir) / relative, ec)) {
      report.problems.push_back({"param", relative, absl::StrCat(name, ": no ", state, ".pt")});
      continue;
    }
    // Anything else than a regular file (a FIFO) is refused by name when opened, never read.
    std::optional<TorchFile> file = OpenChecked(dir, relative, options, report);
    if (!file.has_value()) continue;
    std::optional<StateTensor> tensor = ParamTensor(*file);
    if (!tensor.has_value()) {
      report.problems.push_back(
          {"param", relative, "holds neither a tensor nor a dict with a 'param' tensor"});
      continue;
    }
    if (state == ucp::kFp32State) facts.fp32 = tensor;
    if (!first.has_value()) {
      first = tensor;
      first_state = std::string(state);
    } else if (tensor->shape != first->shape) {
      report.problems.push_back(
          {"param", relative,
           absl::StrCat(name, ": ", state, " has shape ", tensor->shape.ToString(), ", ",
                        first_state, " has ", first->shape.ToString())});
    }
  }
  const std::string step_path = ucp::ParamStatePath(name, ucp::kStepState);
  std::error_code ec;
  if (fs::exists(fs::path(dir) / step_path, ec)) {
    facts.has_step = true;
    if (std::optional<TorchFile> file = OpenChecked(dir, step_path, options, report)) {
      facts.step = StepValue(*file, &file->root());
      if (!facts.step.has_value()) {
        report.problems.push_back(
            {"param", step_path, "not a step value (an int, a float or a 1-element tensor)"});
      }
    }
  }
  return facts;
}

// name → shape from the param_shapes of every top-level model file (MP rank 0's where TP slices
// differ); also the group count and the number of MP ranks.
void CollectParamShapes(const std::string& dir, const VerifyOptions& options, VerifyReport& report,
                        std::map<std::string, Shape>& shapes, std::optional<size_t>& groups,
                        int& mp_ranks) {
  std::set<int> mp_seen;
  std::error_code ec;
  std::vector<std::string> model_files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string base = e.path().filename().string();
    if (e.is_regular_file() && absl::EndsWith(base, keys::kModelStatesSuffix))
      model_files.push_back(base);
  }
  std::sort(model_files.begin(), model_files.end());
  if (model_files.empty())
    report.problems.push_back({"model", "", "no *_model_states.pt file in the folder"});
  for (const std::string& base : model_files) {
    std::optional<TorchFile> file = OpenChecked(dir, base, options, report);
    if (!file.has_value()) continue;
    const std::optional<dsf::FileName> file_name = dsf::ParseFileName(base);
    const int mp_rank = file_name.has_value() ? std::max(file_name->mp_rank, 0) : 0;
    mp_seen.insert(mp_rank);
    const Value* ps = file->root().Get(keys::kParamShapes);
    if (ps == nullptr || ps->is_none()) continue;  // ZeRO-0 saves None
    std::vector<const Value*> dicts;
    if (ps->is_dict()) dicts.push_back(ps);
    if (ps->is_sequence()) dicts.assign(ps->items().begin(), ps->items().end());
    if (!groups.has_value()) groups = dicts.size();
    for (const Value* d : dicts) {
      if (d == nullptr || !d->is_dict()) continue;
      for (const auto& [k, v] : d->entries()) {
        if (k == nullptr || !k->is(ValueKind::kStr)) continue;
        absl::StatusOr<Shape> shape = dsf::AsShape(v, k->str());
        if (!shape.ok()) {
          report.problems.push_back({"model", base, std::string(shape.status().message())});
        } else if (auto it = shapes.find(k->str()); it == shapes.end()) {
          shapes[k->str()] = *shape;
        } else if (it->second != *shape && mp_rank == 0) {  // TP slices (mp rank > 0) may differ
          report.problems.push_back(
              {"model", base,
               absl::StrCat("param_shapes[", k->str(), "] is ", shape->ToString(),
                            ", another model file says ", it->second.ToString())});
        }
      }
    }
  }
  mp_ranks = static_cast<int>(std::max<size_t>(mp_seen.size(), 1));
  if (shapes.empty() && !mp_seen.empty()) {  // e.g. a UCP converted from ZeRO-0
    report.skipped.push_back(
        {"model", "",
         "no param_shapes in the model files: the zero/ folders are not compared "
         "with the model"});
  }
}

bool IsStateFile(const std::string& base) {
  for (absl::string_view state :
       {ucp::kFp32State, ucp::kExpAvgState, ucp::kExpAvgSqState, ucp::kStepState}) {
    if (base == absl::StrCat(state, ".pt")) return true;
  }
  return false;
}

// The fp32 tensor against param_shapes: equal shapes; ZeRO-3 raw tensors are flat with the same
// numel; AutoEP experts hold every expert, a multiple of the EP-local numel. With tp > 1 the UCP
// tensor is the TP merge of the slices param_shapes describe: only the rank is compared.
void CheckAgainstModel(const std::string& name, const StateTensor& fp32, const Shape& shape,
                       int mp_ranks, VerifyReport& report) {
  const std::string relative = ucp::ParamStatePath(name, ucp::kFp32State);
  absl::StatusOr<int64_t> want = shape.NumElements();
  absl::StatusOr<int64_t> have = fp32.shape.NumElements();
  if (!want.ok() || !have.ok()) return;
  bool ok = fp32.shape == shape;
  if (fp32.raw) ok = *have == *want;
  if (fp32.expert) ok = *want > 0 && *have % *want == 0;
  if (mp_ranks > 1) ok = fp32.raw || fp32.shape.rank() == shape.rank();
  if (!ok) {
    report.problems.push_back(
        {"model", relative,
         absl::StrCat(name, ": fp32 has shape ", fp32.shape.ToString(),
                      ", param_shapes in the model file say ", shape.ToString())});
  }
}

}  // namespace

void VerifyUniversal(const std::string& dir, const VerifyOptions& options, VerifyReport& report) {
  const fs::path zero = fs::path(dir) / std::string(ucp::kZeroDir);
  std::error_code ec;
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(zero, ec)) {
    if (e.is_directory()) names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  std::optional<TorchFile> optimizer_state;
  if (!fs::is_regular_file(zero / std::string(ucp::kOptimizerStateFile), ec)) {
    report.problems.push_back({"files", ucp::OptimizerStatePath(), "missing"});
  } else {
    optimizer_state = OpenChecked(dir, ucp::OptimizerStatePath(), options, report);
  }
  std::map<std::string, Shape> shapes;
  std::optional<size_t> groups;
  int mp_ranks = 1;
  CollectParamShapes(dir, options, report, shapes, groups, mp_ranks);
  if (mp_ranks > 1) {
    report.notes.push_back(absl::StrCat("tp ", mp_ranks,
                                        ": the merged fp32 tensors are compared with the per-rank "
                                        "param_shapes by rank only"));
  }
  SkipUnknownFiles(
      dir, "",
      [](const std::string& base) {
        return absl::EndsWith(base, keys::kModelStatesSuffix) || base == ucp::kManifestFile;
      },
      report);
  SkipUnknownFiles(
      dir, std::string(ucp::kZeroDir),
      [](const std::string& base) { return base == ucp::kOptimizerStateFile; }, report);

  std::optional<std::pair<std::string, double>> first_step;
  int with_step = 0;
  for (const std::string& name : names) {
    ++report.params_checked;
    ParamFacts facts = CheckParamFolder(dir, name, options, report);
    SkipUnknownFiles(dir, absl::StrCat(ucp::kZeroDir, "/", name), IsStateFile, report);
    with_step += facts.has_step ? 1 : 0;
    if (facts.step.has_value()) {
      if (!first_step.has_value()) {
        first_step = {name, *facts.step};
      } else if (*facts.step != first_step->second) {
        report.problems.push_back({"param", ucp::ParamStatePath(name, ucp::kStepState),
                                   absl::StrCat("step ", *facts.step, ", but ", first_step->first,
                                                " has ", first_step->second)});
      }
    }
    auto it = shapes.find(name);
    if (it == shapes.end()) {
      if (!shapes.empty()) {
        report.problems.push_back(
            {"model", absl::StrCat(ucp::kZeroDir, "/", name),
             "a parameter folder that no param_shapes of the model files names"});
      }
    } else if (facts.fp32.has_value()) {
      CheckAgainstModel(name, *facts.fp32, it->second, mp_ranks, report);
    }
  }
  if (with_step > 0 && with_step < static_cast<int>(names.size())) {
    for (const std::string& name : names) {
      if (!fs::is_regular_file(fs::path(dir) / ucp::ParamStatePath(name, ucp::kStepState), ec)) {
        report.problems.push_back(
            {"param", ucp::ParamStatePath(name, ucp::kStepState),
             absl::StrCat("missing, while ", with_step, " other parameters have one")});
      }
    }
  }
  const std::set<std::string> folders(names.begin(), names.end());
  for (const auto& [name, shape] : shapes) {
    if (!folders.count(name)) {
      report.problems.push_back(
          {"model", absl::StrCat(ucp::kZeroDir, "/", name),
           "named in param_shapes of the model files, but there is no such folder"});
    }
  }
  if (optimizer_state.has_value() && groups.has_value()) {
    const Value* pg = optimizer_state->root().Get(keys::kParamGroups);
    if (pg != nullptr && pg->is_sequence() && pg->items().size() != *groups) {
      report.problems.push_back(
          {"model", ucp::OptimizerStatePath(),
           absl::StrCat(pg->items().size(), " param_groups, but the model files have ", *groups,
                        " param_shapes groups")});
    }
  }
}

}  // namespace ucp::converters::verify::internal_verify
