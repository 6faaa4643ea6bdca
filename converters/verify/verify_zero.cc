// Checks of a DeepSpeed ZeRO tag folder (verify.h). The per-file, file-set and step checks run on
// every file independently so that each damaged or missing file is named; OpenCheckpoint then
// checks the cross-file invariants (it stops at its first error), and on success the index's
// fragments are checked to cover every parameter exactly once.
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/verify/verify_internal.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/file_names.h"
#include "formats/deepspeed/value_access.h"
#include "formats/torch/torch_file.h"

namespace ucp::converters::verify::internal_verify {
namespace {

namespace ds = ::ucp::converters::deepspeed;
namespace dsf = ::ucp::formats::deepspeed;
namespace keys = ::ucp::formats::deepspeed::keys;
using formats::torch::TorchFile;
using formats::torch::Value;

struct OpenedFile {
  const dsf::ListedFile* listed = nullptr;
  std::shared_ptr<TorchFile> torch;  // null when the file failed to open
};

// The optimizer step a shard records: `step` of the first entry of its torch optimizer `state`.
std::optional<double> OptimizerStep(const TorchFile& file) {
  const Value* osd = file.root().Get(keys::kOptimizerStateDict);
  if (osd == nullptr) return std::nullopt;
  const Value* base = osd->Get(keys::kBaseOptimizerState);          // ZeRO-1/2, BF16_Optimizer
  if (base == nullptr) base = osd->Get(keys::kOptimizerStateDict);  // ZeRO-3
  const Value* state = base == nullptr ? nullptr : base->Get(keys::kState);
  if (state == nullptr || !state->is_dict() || state->entries().empty()) return std::nullopt;
  const Value* first = state->entries().front().second;
  return first != nullptr ? StepValue(file, first->Get(keys::kStep)) : std::nullopt;
}

std::string RankFileName(const std::string& prefix, int dp, int mp, absl::string_view suffix) {
  return suffix == keys::kOptimStatesSuffix ? dsf::OptimStatesFileName(prefix, dp, mp)
                                            : dsf::ZeroModelStatesFileName(dp, mp);
}

// Every (dp, mp) rank file dp_world_size × mp_world_size implies, and the expert grid.
void CheckFileSet(const std::vector<OpenedFile>& files, VerifyReport& report) {
  int dp_world = 0, mp_world = 1;
  for (const OpenedFile& f : files) {
    const auto kind = f.listed->name.kind;
    if (f.torch == nullptr ||
        (kind != dsf::FileKind::kModelStates && kind != dsf::FileKind::kZeroModelStates))
      continue;
    const Value* dp = f.torch->root().Get(keys::kDpWorldSize);
    const Value* mp = f.torch->root().Get(keys::kMpWorldSize);
    if (dp != nullptr && dp->is(formats::torch::ValueKind::kInt))
      dp_world = static_cast<int>(dp->int_value());
    if (mp != nullptr && mp->is(formats::torch::ValueKind::kInt))
      mp_world = static_cast<int>(mp->int_value());
    break;
  }
  if (dp_world > (1 << 20) || mp_world <= 0 || mp_world > (1 << 20))
    return;             // the index reports it
  if (dp_world <= 0) {  // no readable model file: at least find gaps below the highest rank
    for (const OpenedFile& f : files) dp_world = std::max(dp_world, f.listed->name.dp_rank + 1);
  }
  std::set<std::pair<int, int>> optim, zero_model;
  std::set<int> model;
  std::string prefix;
  std::map<int, std::set<std::pair<int, int>>> experts;  // layer → {(expert, mp)}
  int max_expert = -1;
  for (const OpenedFile& f : files) {
    const dsf::FileName& n = f.listed->name;
    if (n.kind == dsf::FileKind::kOptimStates) {
      optim.insert({n.dp_rank, n.mp_rank});
      prefix = n.shard_prefix;
    } else if (n.kind == dsf::FileKind::kZeroModelStates) {
      zero_model.insert({n.dp_rank, n.mp_rank});
    } else if (n.kind == dsf::FileKind::kModelStates) {
      model.insert(n.mp_rank);
    } else if (n.kind == dsf::FileKind::kExpertModelStates) {
      experts[n.layer].insert({n.expert, n.mp_rank});
      max_expert = std::max(max_expert, n.expert);
    }
    const int dp = n.dp_rank;
    if (dp >= dp_world) {
      report.problems.push_back(
          {"files", f.listed->basename,
           absl::StrCat("dp rank ", dp, " but the model files say dp_world_size ", dp_world)});
    }
  }
  const auto expect_grid = [&](const std::set<std::pair<int, int>>& have, absl::string_view suffix,
                               const std::string& pre) {
    if (have.empty()) return;
    for (int mp = 0; mp < mp_world; ++mp) {
      for (int dp = 0; dp < dp_world; ++dp) {
        if (have.count({dp, mp}) != 0) continue;
        report.problems.push_back({"files", RankFileName(pre, dp, mp, suffix),
                                   absl::StrCat("missing: dp rank ", dp, " (of ", dp_world,
                                                "), mp rank ", mp, " (of ", mp_world, ")")});
      }
    }
  };
  expect_grid(optim, keys::kOptimStatesSuffix, prefix);
  expect_grid(zero_model, keys::kModelStatesSuffix, "");
  if (zero_model.empty()) {
    for (int mp = 0; mp < mp_world; ++mp) {
      if (model.count(mp) == 0) {
        report.problems.push_back(
            {"files", dsf::ModelStatesFileName(mp),
             absl::StrCat("missing: model states of mp rank ", mp, " (of ", mp_world, ")")});
      }
    }
  }
  for (const auto& [layer, have] : experts) {
    for (int e = 0; e <= max_expert; ++e) {
      for (int mp = 0; mp < mp_world; ++mp) {
        if (have.count({e, mp}) != 0) continue;
        report.problems.push_back(
            {"files",
             absl::StrFormat("layer_%d_expert_%d_mp_rank_%02d_model_states.pt", layer, e, mp),
             absl::StrCat("missing: expert ", e, " of MoE layer ", layer, " (other layers have ",
                          max_expert + 1, " experts)")});
      }
    }
  }
}

// Model files must agree on global_steps, optimizer shards on their optimizer step; each file that
// differs from the first of its kind is named.
void CheckSteps(const std::vector<OpenedFile>& files, VerifyReport& report) {
  const OpenedFile* first_model = nullptr;
  const OpenedFile* first_optim = nullptr;
  std::optional<double> model_step, optim_step;
  for (const OpenedFile& f : files) {
    if (f.torch == nullptr) continue;
    const auto kind = f.listed->name.kind;
    if (kind == dsf::FileKind::kModelStates || kind == dsf::FileKind::kZeroModelStates ||
        kind == dsf::FileKind::kExpertModelStates) {
      const Value* v = f.torch->root().Get(keys::kGlobalSteps);
      if (v == nullptr || !v->is(formats::torch::ValueKind::kInt)) continue;
      const double step = static_cast<double>(v->int_value());
      if (first_model == nullptr) {
        first_model = &f;
        model_step = step;
      } else if (step != *model_step) {
        report.problems.push_back(
            {"step", f.listed->basename,
             absl::StrCat("global_steps ", step, ", but ", first_model->listed->basename, " has ",
                          *model_step, " (a file from another save?)")});
      }
    } else if (kind == dsf::FileKind::kOptimStates) {
      const std::optional<double> step = OptimizerStep(*f.torch);
      if (!step.has_value()) continue;
      if (first_optim == nullptr) {
        first_optim = &f;
        optim_step = step;
      } else if (*step != *optim_step) {
        report.problems.push_back(
            {"step", f.listed->basename,
             absl::StrCat("optimizer step ", *step, ", but ", first_optim->listed->basename,
                          " has ", *optim_step, " (a shard from another save?)")});
      }
    }
  }
}

// The first listed base name the message mentions (OpenCheckpoint names the file at fault).
std::string FileNamedIn(absl::string_view message, const std::vector<dsf::ListedFile>& listed) {
  std::string best;
  size_t best_pos = std::string::npos;
  for (const dsf::ListedFile& f : listed) {
    const size_t pos = message.find(f.basename);
    // A longer name at the same position wins ("bf16_zero_pp..." over "zero_pp...").
    if (pos != absl::string_view::npos &&
        (pos < best_pos || (pos == best_pos && f.basename.size() > best.size()))) {
      best = f.basename;
      best_pos = pos;
    }
  }
  return best;
}

}  // namespace

std::optional<double> StepValue(const TorchFile& file, const Value* v) {
  if (v == nullptr) return std::nullopt;
  if (v->is(formats::torch::ValueKind::kInt)) return static_cast<double>(v->int_value());
  if (v->is(formats::torch::ValueKind::kFloat)) return v->float_value();
  if (!v->is(formats::torch::ValueKind::kTensor) || v->tensor().NumElements() != 1)
    return std::nullopt;
  absl::StatusOr<Buffer> bytes = file.TensorBytes(v->tensor());
  if (!bytes.ok()) return std::nullopt;
  const DType dtype = v->tensor().dtype;
  if (dtype == DType::kF32 && bytes->size() == 4) {
    float f;
    std::memcpy(&f, bytes->data(), 4);
    return f;
  }
  if (dtype == DType::kF64 && bytes->size() == 8) {
    double d;
    std::memcpy(&d, bytes->data(), 8);
    return d;
  }
  if (dtype == DType::kI64 && bytes->size() == 8) {
    int64_t i;
    std::memcpy(&i, bytes->data(), 8);
    return static_cast<double>(i);
  }
  return std::nullopt;
}

absl::Status VerifyZero(const std::string& path, const VerifyOptions& options,
                        VerifyReport& report) {
  UCP_ASSIGN_OR_RETURN(dsf::CheckpointDir dir, dsf::ResolveCheckpointDir(path, options.tag));
  report.path = dir.tag_dir;
  absl::StatusOr<std::vector<dsf::ListedFile>> listed = dsf::ListCheckpointFiles(dir.tag_dir);
  if (absl::IsUnimplemented(
          listed.status())) {  // e.g. NVMe-offloaded state: nothing can be checked
    report.skipped.push_back({"files", "", std::string(listed.status().message())});
    return absl::OkStatus();
  }
  if (!listed.ok()) {
    report.problems.push_back({"files", "", std::string(listed.status().message())});
    return absl::OkStatus();
  }
  std::set<std::string> known;
  for (const dsf::ListedFile& f : *listed) known.insert(f.basename);
  SkipUnknownFiles(
      dir.tag_dir, "", [&](const std::string& base) { return known.count(base) > 0; }, report);
  std::vector<OpenedFile> files;
  for (const dsf::ListedFile& l : *listed) {
    OpenedFile f{&l, nullptr};
    ++report.files_checked;
    absl::StatusOr<TorchFile> torch = TorchFile::OpenPath(l.path);
    absl::Status status = torch.status();
    if (status.ok() && options.check_crc) status = torch->Verify();
    if (status.ok()) {
      f.torch = std::make_shared<TorchFile>(*std::move(torch));
    } else {
      report.problems.push_back({"file", l.basename, std::string(status.message())});
    }
    files.push_back(std::move(f));
  }
  CheckFileSet(files, report);
  CheckSteps(files, report);
  absl::StatusOr<ds::CheckpointIndex> index = ds::OpenCheckpoint(dir.tag_dir);
  if (!index.ok()) {
    const std::string message(index.status().message());
    if (absl::IsUnimplemented(
            index.status())) {  // a layout ucp does not index: not a damaged checkpoint
      report.skipped.push_back(
          {"index", FileNamedIn(message, *listed),
           absl::StrCat("cross-file, cover and padding checks not made: ", message)});
      return absl::OkStatus();
    }
    const std::string file = FileNamedIn(message, *listed);
    // A file that does not open was named above; the index stops at the same error.
    const bool named =
        std::any_of(report.problems.begin(), report.problems.end(),
                    [&](const Problem& p) { return p.check == "file" && p.file == file; });
    if (!named || file.empty()) report.problems.push_back({"index", file, message});
    return absl::OkStatus();
  }
  report.params_checked = static_cast<int>(index->params.size() + index->frozen_params.size());
  CheckIndexCoverage(*index, report);
  return absl::OkStatus();
}

}  // namespace ucp::converters::verify::internal_verify
