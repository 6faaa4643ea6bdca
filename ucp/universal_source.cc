#include "ucp/universal_source.h"

#include <algorithm>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "formats/deepspeed/file_names.h"
#include "ucp/manifest.h"
#include "ucp/shard_layout.h"
#include "ucp/ucp_layout.h"

namespace ucp {
namespace {

namespace fs = std::filesystem;
using formats::torch::TorchFile;
using formats::torch::ValueKind;

class UniversalSource : public Source {
 public:
  explicit UniversalSource(SourceInfo info) : Source(SourceKind::kUniversal, std::move(info)) {}
  using Source::AddFile;
  using Source::AddParam;
  using Source::mutable_info;
};

struct OpenedFile {
  std::shared_ptr<TorchFile> torch;
  int index = -1;
};

absl::StatusOr<OpenedFile> OpenTorch(UniversalSource& source, const std::string& path) {
  UCP_ASSIGN_OR_RETURN(TorchFile file, TorchFile::OpenPath(path));
  OpenedFile out;
  out.torch = std::make_shared<TorchFile>(std::move(file));
  out.index = source.AddFile(out.torch->zip().shared_source());
  return out;
}

std::optional<int64_t> IntValue(const Value* v) {
  if (v == nullptr) return std::nullopt;
  if (v->is(ValueKind::kInt)) return v->int_value();
  // ZeroStageEnum(2): an object whose single constructor argument is the value.
  if (v->is(ValueKind::kObject) && v->args() != nullptr && v->args()->items().size() == 1 &&
      v->args()->items()[0]->is(ValueKind::kInt)) {
    return v->args()->items()[0]->int_value();
  }
  return std::nullopt;
}

// torch.Size((d0, d1, ...)) as pickled (an object whose argument is a tuple), or a plain
// tuple/list.
std::optional<Shape> ShapeFromValue(const Value* v) {
  if (v == nullptr) return std::nullopt;
  if (v->is(ValueKind::kObject) && v->args() != nullptr && v->args()->items().size() == 1)
    v = v->args()->items()[0];
  if (!v->is_sequence()) return std::nullopt;
  std::vector<int64_t> dims;
  for (const Value* d : v->items()) {
    if (!d->is(ValueKind::kInt) || d->int_value() < 0) return std::nullopt;
    dims.push_back(d->int_value());
  }
  return Shape(std::move(dims));
}

// A per-parameter state file: the tensor and the expert marks of DeepSpeed's dict form.
struct StateFile {
  const formats::torch::TensorRef* tensor = nullptr;
  bool expert = false;
  int64_t ep_num_experts = 0;
};

absl::StatusOr<StateFile> ReadStateFile(const TorchFile& file) {
  const Value& root = file.root();
  StateFile out;
  const Value* t = &root;
  if (root.is_dict()) {
    t = root.Get(kParamKey);
    if (const Value* e = root.Get(kIsExpertParamKey); e != nullptr && e->is(ValueKind::kBool))
      out.expert = e->bool_value();
    if (auto n = IntValue(root.Get(kEpNumExpertsKey))) out.ep_num_experts = *n;
  }
  if (t == nullptr || !t->is(ValueKind::kTensor)) {
    return absl::DataLossError(
        absl::StrCat(file.name(), ": neither a tensor nor a dict with a 'param' tensor"));
  }
  out.tensor = &t->tensor();
  return out;
}

absl::Status CheckManifestSizes(const std::string& dir) {
  if (!fs::exists(fs::path(dir) / std::string(kManifestFile))) return absl::OkStatus();
  UCP_ASSIGN_OR_RETURN(Manifest manifest, ReadManifest(dir));
  for (const ManifestEntry& e : manifest.files) {
    std::error_code ec;
    const uint64_t size = fs::file_size(fs::path(dir) / e.path, ec);
    if (ec)
      return absl::DataLossError(
          absl::StrCat(dir, ": ", e.path, " is listed in ", kManifestFile, " but missing"));
    if (size != e.size) {
      return absl::DataLossError(absl::StrCat(dir, "/", e.path, ": ", size, " bytes, but ",
                                              kManifestFile, " says ", e.size));
    }
  }
  return absl::OkStatus();
}

// The model-states file a UCP keeps for MP rank 0 (and, for ZeRO-3, DP rank `dp`).
std::string ModelFile(const std::string& dir, int dp) {
  const fs::path zero3 = fs::path(dir) / formats::deepspeed::ZeroModelStatesFileName(dp, 0);
  if (fs::exists(zero3)) return zero3.string();
  const fs::path zero12 = fs::path(dir) / formats::deepspeed::ModelStatesFileName(0);
  return dp == 0 && fs::exists(zero12) ? zero12.string() : std::string();
}

// What the model-states file declares: trainable parameters (param_shapes, in order, with their
// group and shape) and frozen parameters.
struct Declared {
  std::string model_path;         // empty: no model-states file, nothing declared
  bool has_param_shapes = false;  // ZeRO-0 UCPs keep param_shapes None
  std::vector<std::string> order;
  absl::flat_hash_map<std::string, int> group_of;
  absl::flat_hash_map<std::string, Shape> shape_of;
  std::vector<std::string> frozen_names;
};

Declared ReadDeclared(UniversalSource& source, const std::string& path, const Value& root) {
  Declared d;
  d.model_path = path;
  if (auto steps = IntValue(root.Get("global_steps"))) source.mutable_info().step = *steps;
  if (auto dp = IntValue(root.Get("dp_world_size"))) {
    source.mutable_info().dp_size = static_cast<int>(*dp);
  }
  if (auto mp = IntValue(root.Get("mp_world_size"))) {
    source.mutable_info().tp_size = static_cast<int>(*mp);
  }
  if (const Value* shapes = root.Get("param_shapes"); shapes != nullptr && shapes->is_sequence()) {
    d.has_param_shapes = true;
    int g = 0;
    for (const Value* group : shapes->items()) {
      for (const auto& [k, v] : group->entries()) {
        if (!k->is(ValueKind::kStr)) continue;
        d.order.push_back(k->str());
        d.group_of[k->str()] = g;
        if (std::optional<Shape> shape = ShapeFromValue(v)) d.shape_of[k->str()] = *shape;
      }
      ++g;
    }
  }
  if (const Value* frozen = root.Get("frozen_param_shapes");
      frozen != nullptr && frozen->is_dict()) {
    for (const auto& [k, v] : frozen->entries()) {
      if (k->is(ValueKind::kStr)) d.frozen_names.push_back(k->str());
    }
  }
  return d;
}

// The zero/<param>/ folders, in param_shapes order. Where param_shapes declares the parameters,
// exactly those: DataLoss naming a missing folder or one it does not declare (issue 16.3).
absl::StatusOr<std::vector<std::string>> ParamFolders(const std::string& zero,
                                                      const Declared& declared) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(zero, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec)) names.push_back(it->path().filename().string());
  }
  if (ec) return absl::UnavailableError(absl::StrCat(zero, ": ", ec.message()));
  std::sort(names.begin(), names.end());
  if (!declared.has_param_shapes) return names;
  absl::flat_hash_set<std::string> present(names.begin(), names.end());
  absl::flat_hash_set<std::string> listed(declared.order.begin(), declared.order.end());
  std::vector<std::string> missing, extra;
  for (const std::string& n : declared.order) {
    if (!present.contains(n)) missing.push_back(n);
  }
  for (const std::string& n : names) {
    if (!listed.contains(n)) extra.push_back(n);
  }
  auto list = [](const std::vector<std::string>& v) {
    std::vector<std::string> shown(v.begin(), v.begin() + std::min<size_t>(v.size(), 5));
    return absl::StrCat(absl::StrJoin(shown, ", "), v.size() > shown.size() ? ", ..." : "");
  };
  if (!missing.empty()) {
    return absl::DataLossError(
        absl::StrCat(zero, ": ", missing.size(), " parameter folder(s) missing that ",
                     "param_shapes of ", declared.model_path, " declares: ", list(missing)));
  }
  if (!extra.empty()) {
    return absl::DataLossError(absl::StrCat(zero, ": ", extra.size(),
                                            " parameter folder(s) not in param_shapes of ",
                                            declared.model_path, ": ", list(extra)));
  }
  return declared.order;
}

// UniversalOpenOptions::partial: which declared folders are missing and which folders param_shapes
// does not declare, in info.extra ("params_missing", "params_undeclared"), for the diff to say.
void NotePartial(const Declared& declared, const std::vector<std::string>& names,
                 SourceInfo& info) {
  absl::flat_hash_set<std::string> present(names.begin(), names.end());
  absl::flat_hash_set<std::string> listed(declared.order.begin(), declared.order.end());
  nlohmann::json missing = nlohmann::json::array(), undeclared = nlohmann::json::array();
  for (const std::string& n : declared.order) {
    if (!present.contains(n)) missing.push_back(n);
  }
  for (const std::string& n : names) {
    if (!listed.contains(n)) undeclared.push_back(n);
  }
  if (!missing.empty()) info.extra["params_missing"] = std::move(missing);
  if (!undeclared.empty()) info.extra["params_undeclared"] = std::move(undeclared);
}

// One zero/<name>/ folder: its state files (fp32.pt required) and step.
absl::Status AddParamFolder(UniversalSource& source, const fs::path& zero, const std::string& name,
                            const Declared& declared, std::optional<double> zero3_step) {
  ParamMeta meta;
  meta.name = name;
  meta.role = ParamRole::kTrainable;
  if (auto it = declared.group_of.find(name); it != declared.group_of.end()) {
    meta.param_group = it->second;
  }
  bool first = true;
  for (int s = 0; s < kNumParamStates; ++s) {
    const fs::path path =
        zero / name / absl::StrCat(ParamStateName(static_cast<ParamState>(s)), ".pt");
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      if (s == 0 && declared.has_param_shapes) {
        return absl::DataLossError(
            absl::StrCat(path.string(), ": missing (every parameter has its fp32 weight)"));
      }
      continue;
    }
    UCP_ASSIGN_OR_RETURN(OpenedFile file, OpenTorch(source, path.string()));
    UCP_ASSIGN_OR_RETURN(StateFile sf, ReadStateFile(*file.torch));
    if (first) {
      meta.shape = sf.tensor->shape;
      meta.expert = sf.expert;
      meta.num_experts = static_cast<int>(sf.ep_num_experts);
      first = false;
    } else if (!(sf.tensor->shape == meta.shape)) {
      return absl::DataLossError(
          absl::StrCat(path.string(), ": shape ", sf.tensor->shape.ToString(), " but ",
                       ParamStateName(ParamState::kFp32), " has ", meta.shape.ToString()));
    }
    UCP_ASSIGN_OR_RETURN(meta.states[s], TensorState(*file.torch, *sf.tensor, file.index));
  }
  if (first) return absl::OkStatus();  // an empty folder of an undeclared UCP
  // ZeRO-3 UCP files hold the flattened tensor; param_shapes has the parameter's shape.
  if (auto it = declared.shape_of.find(name);
      it != declared.shape_of.end() && meta.shape.rank() == 1 && !meta.expert) {
    absl::StatusOr<int64_t> n = it->second.NumElements();
    if (n.ok() && *n == meta.shape.dim(0)) meta.shape = it->second;
  }
  const fs::path step = zero / name / "step.pt";
  std::error_code ec;
  if (fs::exists(step, ec)) {
    UCP_ASSIGN_OR_RETURN(OpenedFile file, OpenTorch(source, step.string()));
    absl::StatusOr<double> v = ScalarValue(*file.torch, file.torch->root());
    if (v.ok()) meta.step = *v;
  } else {
    meta.step = zero3_step;
  }
  meta.partitioning = meta.expert
                          ? absl::StrCat("universal, experts stacked (", meta.num_experts, ")")
                          : "universal, whole";
  return source.AddParam(std::move(meta));
}

absl::Status AddModelParams(UniversalSource& source, const std::string& dir,
                            const OpenedFile& model, const std::vector<std::string>& frozen_names) {
  const Value& root = model.torch->root();
  const Value* module = root.Get("module");
  const int64_t dp = IntValue(root.Get("dp_world_size")).value_or(1);
  // Frozen parameters: whole in `module` (ZeRO-1/2), else each DP rank's frozen_param_fragments.
  for (const std::string& name : frozen_names) {
    ParamMeta meta;
    meta.name = name;
    meta.role = ParamRole::kFrozen;
    const Value* shapes = root.Get("frozen_param_shapes");
    const Value* shape_value = shapes != nullptr ? shapes->Get(name) : nullptr;
    const Value* whole = module != nullptr ? module->Get(name) : nullptr;
    if (whole != nullptr && whole->is(ValueKind::kTensor) && whole->tensor().NumElements() > 0) {
      meta.shape = whole->tensor().shape;
      meta.partitioning = "frozen, whole (model states)";
      UCP_ASSIGN_OR_RETURN(meta.states[0], TensorState(*model.torch, whole->tensor(), model.index));
      UCP_RETURN_IF_ERROR(source.AddParam(std::move(meta)));
      continue;
    }
    std::optional<Shape> frozen_shape = ShapeFromValue(shape_value);
    if (!frozen_shape) {  // declared, but neither in `module` nor with a shape to rebuild it from
      return absl::DataLossError(
          absl::StrCat(model.torch->name(), ": frozen parameter '", name,
                       "' is not in module and frozen_param_shapes has no shape for it"));
    }
    meta.shape = *frozen_shape;
    UCP_ASSIGN_OR_RETURN(int64_t numel, meta.shape.NumElements());
    StateMeta state;
    for (int64_t d = 0; d < dp; ++d) {
      const std::string path = ModelFile(dir, static_cast<int>(d));
      if (path.empty())
        return absl::NotFoundError(absl::StrCat(dir, ": no model-states file for dp rank ", d));
      UCP_ASSIGN_OR_RETURN(OpenedFile rank, OpenTorch(source, path));
      const Value* frags = rank.torch->root().Get("frozen_param_fragments");
      const Value* frag = frags != nullptr ? frags->Get(name) : nullptr;
      if (frag == nullptr || !frag->is(ValueKind::kTensor)) {
        return absl::DataLossError(
            absl::StrCat(path, ": frozen_param_fragments has no tensor '", name, "'"));
      }
      UCP_ASSIGN_OR_RETURN(ByteRun run, TensorRun(*rank.torch, frag->tensor(), rank.index));
      const int64_t take = PerParamShard(numel, static_cast<int>(dp), static_cast<int>(d)).valid;
      const uint64_t bytes = static_cast<uint64_t>(take) * DTypeSize(frag->tensor().dtype);
      if (bytes > run.size)
        return absl::DataLossError(absl::StrCat(path, ": fragment of '", name, "' is short"));
      state.dtype = frag->tensor().dtype;
      if (bytes > 0) state.runs.push_back(ByteRun{run.file, run.offset, bytes});
    }
    meta.partitioning = absl::StrCat("frozen, zero3 partitioned over ", dp, " dp ranks");
    meta.states[0] = std::move(state);
    UCP_RETURN_IF_ERROR(source.AddParam(std::move(meta)));
  }
  // Buffers.
  if (const Value* names = root.Get("buffer_names"); names != nullptr && module != nullptr) {
    for (const Value* n : names->items()) {
      if (!n->is(ValueKind::kStr) || source.Find(n->str()) != nullptr) continue;
      const Value* t = module->Get(n->str());
      if (t == nullptr || !t->is(ValueKind::kTensor)) {
        return absl::DataLossError(
            absl::StrCat(model.torch->name(), ": buffer '", n->str(),
                         "' is in buffer_names but has no tensor in module"));
      }
      ParamMeta meta;
      meta.name = n->str();
      meta.role = ParamRole::kBuffer;
      meta.shape = t->tensor().shape;
      meta.partitioning = "buffer, model states";
      UCP_ASSIGN_OR_RETURN(meta.states[0], TensorState(*model.torch, t->tensor(), model.index));
      UCP_RETURN_IF_ERROR(source.AddParam(std::move(meta)));
    }
  }
  // Tied aliases.
  if (const Value* shared = root.Get("shared_params"); shared != nullptr && shared->is_dict()) {
    for (const auto& [alias, stored] : shared->entries()) {
      if (!alias->is(ValueKind::kStr) || !stored->is(ValueKind::kStr)) continue;
      const ParamMeta* target = source.Find(stored->str());
      if (target == nullptr || source.Find(alias->str()) != nullptr) continue;
      ParamMeta meta = *target;
      meta.name = alias->str();
      meta.tied_to = stored->str();
      meta.partitioning = absl::StrCat("tied to ", stored->str());
      UCP_RETURN_IF_ERROR(source.AddParam(std::move(meta)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Source>> OpenUniversalSource(const std::string& dir,
                                                            const UniversalOpenOptions& options) {
  const fs::path zero = fs::path(dir) / std::string(kZeroDir);
  if (!fs::is_directory(zero)) {
    return absl::NotFoundError(
        absl::StrCat(dir, ": not a Universal Checkpoint folder (no ", kZeroDir, "/)"));
  }
  if (options.check_manifest_sizes) UCP_RETURN_IF_ERROR(CheckManifestSizes(dir));
  SourceInfo info;
  info.path = dir;
  info.tag = fs::path(dir).filename().string();
  auto source = std::make_unique<UniversalSource>(std::move(info));

  // Global optimizer state: hyper-parameters, stage, ZeRO-3 step.
  std::optional<double> zero3_step;
  const fs::path optimizer = zero / std::string(kOptimizerStateFile);
  if (fs::exists(optimizer)) {
    UCP_ASSIGN_OR_RETURN(OpenedFile opt, OpenTorch(*source, optimizer.string()));
    const Value& root = opt.torch->root();
    if (auto stage = IntValue(root.Get(formats::deepspeed::keys::kZeroStage)))
      source->mutable_info().zero_stage = static_cast<int>(*stage);
    if (const Value* groups = root.Get("param_groups");
        groups != nullptr && groups->is_sequence()) {
      for (const Value* g : groups->items()) {
        nlohmann::json hp = PlainJson(*g);
        if (hp.is_object()) hp.erase("params");
        source->mutable_info().param_groups.push_back(std::move(hp));
      }
    }
    if (const Value* inner = root.Get(formats::deepspeed::keys::kOptimizerStateDict);
        inner != nullptr) {
      const Value* state = inner->Get("state");
      if (state != nullptr && state->is_dict() && !state->entries().empty()) {
        const Value* step = state->entries()[0].second->Get("step");
        if (step != nullptr) {
          absl::StatusOr<double> v = ScalarValue(*opt.torch, *step);
          if (v.ok()) zero3_step = *v;
        }
      }
    }
  }

  // Model-states file: what the checkpoint declares, step, frozen params, buffers, tied aliases.
  Declared declared;
  std::optional<OpenedFile> model;
  if (const std::string path = ModelFile(dir, 0); !path.empty()) {
    UCP_ASSIGN_OR_RETURN(model, OpenTorch(*source, path));
    declared = ReadDeclared(*source, path, model->torch->root());
  }
  Declared folders = declared;
  if (options.partial) folders.has_param_shapes = false;  // what is there, by name
  UCP_ASSIGN_OR_RETURN(std::vector<std::string> names, ParamFolders(zero.string(), folders));
  if (options.partial && declared.has_param_shapes) {
    NotePartial(declared, names, source->mutable_info());
  }
  for (const std::string& name : names) {
    UCP_RETURN_IF_ERROR(AddParamFolder(*source, zero, name, folders, zero3_step));
  }
  if (model) UCP_RETURN_IF_ERROR(AddModelParams(*source, dir, *model, declared.frozen_names));
  return std::unique_ptr<Source>(std::move(source));
}

}  // namespace ucp
