#include "converters/sinks/ucp/zero_to_ucp.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "converters/plan/merge_rules.h"
#include "converters/plan/merged_state_file.h"
#include "converters/sinks/ucp/zero_to_ucp_internal.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "ucp/torch_frame.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::sinks {

namespace keys = formats::deepspeed::keys;
using deepspeed::CheckpointIndex;
using deepspeed::Fragment;
using deepspeed::Parameter;
using deepspeed::StateKind;
using formats::torch::ValueArena;
using internal_ucp_sink::StorageLocator;
using plan::CopyOp;
using plan::FileRole;
using plan::FramedFile;
using plan::Plan;
using plan::PlanFile;
using plan::PlanInfo;
using plan::PlanSource;
using plan::Region;
using plan::ValidatePlan;
using plan::internal_plan::DictSpec;
using plan::internal_plan::MergedStateFile;
using plan::internal_plan::MergeRules;
using plan::internal_plan::ParamKeys;

namespace {

PlanInfo Describe(const CheckpointIndex& index) {
  const ucp::Topology& t = index.topology;
  const deepspeed::ZeroKind& zk = index.kind;
  PlanInfo i;
  i.pipeline = "zero_to_ucp";
  i.input = index.dir.tag_dir;
  i.wrapper = std::string(deepspeed::OptimizerWrapperName(zk.wrapper));
  i.zero_stage = zk.zero_stage;
  i.dp_size = t.dp;
  i.tp_size = t.tp;
  i.pp_size = t.pp;
  i.ep_size = t.ep;
  i.master_dtype = std::string(DTypeName(zk.master_dtype));
  i.state_dtype = std::string(DTypeName(zk.state_dtype));
  i.param_groups = static_cast<int>(index.param_groups.size());
  i.params = static_cast<int>(index.params.size());
  for (const Parameter& p : index.params) i.expert_params += p.is_expert() ? 1 : 0;
  i.autoep_layers = static_cast<int>(index.autoep_layers.size());
  i.frozen_params = static_cast<int>(index.frozen_params.size());
  return i;
}

// ds_to_universal's _check_for_required_state (ZeRO-1/2 only).
absl::Status CheckUniversalInfo(const CheckpointIndex& index, const ZeroToUcpOptions& options) {
  const deepspeed::UniversalCheckpointInfo& u = index.universal_checkpoint_info;
  if (!u.present() && !options.inject_missing_state) {
    return absl::FailedPreconditionError(absl::StrCat(
        index.model_file().path, ": no ", keys::kUniversalCheckpointInfo,
        "; ds_to_universal needs the training client to save it (--inject_missing_state supplies "
        "{'",
        keys::kUniversalCheckpointVersion, "': ", keys::kUniversalCheckpointVersionValue, "})"));
  }
  if (u.autotp_unsupported != nullptr && u.autotp_unsupported->is_dict() &&
      !u.autotp_unsupported->entries().empty()) {
    std::vector<std::string> reasons;
    for (const auto& [k, v] : u.autotp_unsupported->entries()) {
      reasons.push_back(
          absl::StrCat(k->str(), ": ", v->is(formats::torch::ValueKind::kStr) ? v->str() : "?"));
    }
    return absl::FailedPreconditionError(absl::StrCat(index.model_file().path,
                                                      ": AutoTP universal checkpoint "
                                                      "conversion is not supported for ",
                                                      absl::StrJoin(reasons, ", ")));
  }
  return absl::OkStatus();
}

// The form, shape and dict keys of a parameter's three state files (dtype and requires_grad are
// set per state).
absl::StatusOr<ucp::ParamStateSpec> SpecFor(const CheckpointIndex& index, const Parameter& p,
                                            MergeRules* rules) {
  ucp::ParamStateSpec spec;
  if (p.is_expert()) {
    spec.form = ucp::ParamFileForm::kExpertDict;
    spec.shape = p.merged_shape();
    spec.ep_num_experts = p.expert->num_experts;
  } else if (index.kind.zero_stage == 3) {
    spec.form = ucp::ParamFileForm::kRawTensor;
    spec.shape = Shape({p.numel()});
  } else {
    UCP_ASSIGN_OR_RETURN(ParamKeys k, rules->ForParam(p.name, p.shape));
    spec.form = ucp::ParamFileForm::kDict;
    spec.shape = k.shape;
    spec.cat_dim = k.cat_dim;
    spec.n_sub_params = k.n_sub_params;
    spec.vocab_tensor = k.vocab_tensor;
  }
  UCP_ASSIGN_OR_RETURN(spec.storage_numel, p.merged_shape().NumElements());
  return spec;
}

// zero/<param>/<state>.pt: a new storage whose payload is the fragments, in merged order.
absl::StatusOr<PlanFile> ParamStateFile(const CheckpointIndex& index, const Parameter& p,
                                        StateKind state, ucp::ParamStateSpec spec,
                                        ValueArena& arena) {
  const std::vector<Fragment>& fragments = p.slices[0].fragments;
  const std::string path = ucp::ParamStatePath(p.name, deepspeed::StateName(state));
  DType dtype = DType::kF32;
  bool requires_grad = false;
  UCP_RETURN_IF_ERROR(
      plan::internal_plan::StateDtype(index, p, state, 1, path, &dtype, &requires_grad));
  if (p.is_expert() && index.kind.zero_stage <= 2 && dtype != DType::kF32) {
    return absl::FailedPreconditionError(
        absl::StrCat("AutoEP expert '", p.name, "': ", deepspeed::StateName(state), " is ",
                     DTypeName(dtype), "; DeepSpeed converts only fp32 expert states"));
  }
  spec.dtype = dtype;
  spec.requires_grad = requires_grad;
  UCP_ASSIGN_OR_RETURN(ucp::ParamStateTree tree, ucp::BuildParamStateTree(arena, spec));
  UCP_ASSIGN_OR_RETURN(ucp::TorchFrame frame,
                       ucp::FrameTorchFile(ucp::ArchiveRootFor(path), *tree.root, nullptr));
  const uint64_t elem = DTypeSize(dtype);
  Region region{frame.storages[0].payload_offset, frame.storages[0].size, {}};
  int64_t expected = 0;
  for (const Fragment& f : fragments) {
    if (f.numel == 0) continue;
    const deepspeed::TensorLocation& loc = f.state(state);
    if (f.merged_offset != expected || loc.numel != f.numel) {
      return absl::DataLossError(absl::StrCat(index.files[loc.file].path, ": fragment of '", p.name,
                                              "' at element ", f.merged_offset,
                                              " leaves a gap or overlap at ", expected));
    }
    region.ops.push_back(CopyOp{loc.file, loc.file_offset, loc.num_bytes(),
                                region.offset + static_cast<uint64_t>(f.merged_offset) * elem});
    expected += f.numel;
  }
  if (static_cast<uint64_t>(expected) * elem != region.size) {
    return absl::DataLossError(absl::StrCat("fragments of '", p.name, "' hold ", expected,
                                            " elements of ", spec.storage_numel));
  }
  std::vector<Region> regions;
  regions.push_back(std::move(region));
  return FramedFile(path, FileRole::kParamState, std::move(frame), std::move(regions));
}

absl::Status AddParamFiles(const CheckpointIndex& index, const Parameter& p, MergeRules* rules,
                           const StorageLocator& locator, ValueArena& arena, Plan* plan) {
  absl::Status name_ok = ucp::ValidateParamName(p.name);
  if (!name_ok.ok()) return WithContext(name_ok, index.model_file().path);
  if (!p.is_expert() && index.kind.zero_stage <= 2) {
    std::vector<Shape> rank_shapes;
    for (const deepspeed::ParamSlice& slice : p.slices) rank_shapes.push_back(slice.shape);
    UCP_ASSIGN_OR_RETURN(ParamKeys k, rules->ForParam(p.name, rank_shapes));
    const ucp::ParamStateSpec spec = DictSpec(k, arena);
    for (StateKind s : deepspeed::kAllStates) {
      UCP_ASSIGN_OR_RETURN(PlanFile f, MergedStateFile(index, p, s, spec, k, arena, plan));
      plan->files.push_back(std::move(f));
    }
  } else {
    UCP_ASSIGN_OR_RETURN(ucp::ParamStateSpec spec, SpecFor(index, p, rules));
    for (StateKind s : deepspeed::kAllStates) {
      UCP_ASSIGN_OR_RETURN(PlanFile f, ParamStateFile(index, p, s, spec, arena));
      plan->files.push_back(std::move(f));
    }
  }
  if (index.kind.zero_stage <= 2) {
    const deepspeed::FlatGroup& group = index.flat_groups[p.flat_group];
    if (const formats::torch::Value* step = group.step(); step != nullptr) {
      absl::StatusOr<PlanFile> f = internal_ucp_sink::FileFromTree(
          ucp::ParamStatePath(p.name, ucp::kStepState), FileRole::kStep, *step, locator);
      if (!f.ok()) return WithContext(f.status(), index.files[group.ranks[0].step_file].path);
      plan->files.push_back(*std::move(f));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Plan> PlanZeroToUcp(const CheckpointIndex& index, const ZeroToUcpOptions& options) {
  const ucp::Topology& t = index.topology;
  const deepspeed::ZeroKind& zk = index.kind;
  if (t.tp != t.mp() || (t.tp != 1 && zk.zero_stage == 3)) {
    return absl::UnimplementedError(absl::StrCat(
        index.dir.tag_dir, ": tensor parallelism (tp_size=", t.tp, ", mp_size=", t.mp(), ", ZeRO-",
        zk.zero_stage, "): only ZeRO-1/2 TP slices are merged into a UCP"));
  }
  for (const Parameter& p : index.params) {
    if (static_cast<int>(p.slices.size()) != t.tp) {
      return absl::InternalError(absl::StrCat("parameter '", p.name, "' has ", p.slices.size(),
                                              " TP slices, tp is ", t.tp));
    }
  }
  Plan plan;
  plan.info = Describe(index);
  for (const deepspeed::CheckpointFile& f : index.files) {
    plan.sources.push_back(PlanSource{f.path, f.torch->zip().source().Size()});
  }
  ValueArena arena;
  UCP_ASSIGN_OR_RETURN(StorageLocator locator, StorageLocator::Build(index));
  std::optional<MergeRules> rules;
  if (zk.zero_stage <= 2) {
    UCP_RETURN_IF_ERROR(CheckUniversalInfo(index, options));
    absl::StatusOr<MergeRules> r = MergeRules::Create(index.universal_checkpoint_info);
    if (!r.ok()) return WithContext(r.status(), index.model_file().path);
    rules = *std::move(r);
  }
  for (const Parameter& p : index.params) {
    UCP_RETURN_IF_ERROR(AddParamFiles(index, p, rules ? &*rules : nullptr, locator, arena, &plan));
  }
  if (rules && rules->any_param_seen()) {
    const std::vector<std::string> unused = rules->Unused();
    const std::string list = absl::StrCat("[", absl::StrJoin(unused, ", "), "]");
    if (!unused.empty() && options.strict) {
      return absl::FailedPreconditionError(
          absl::StrCat(index.model_file().path, ": ", keys::kUniversalCheckpointInfo,
                       " patterns match no parameter: ", list, " (--no_strict converts anyway)"));
    }
    if (!unused.empty())
      plan.info.notes.push_back(absl::StrCat("unused patterns ", list, " (--no_strict)"));
  }
  UCP_ASSIGN_OR_RETURN(PlanFile optimizer_state,
                       internal_ucp_sink::OptimizerStateFile(index, arena, locator));
  plan.files.push_back(std::move(optimizer_state));
  UCP_RETURN_IF_ERROR(internal_ucp_sink::AddModelFiles(index, arena, locator, &plan));
  UCP_RETURN_IF_ERROR(ValidatePlan(plan));
  return plan;
}

}  // namespace ucp::converters::sinks
