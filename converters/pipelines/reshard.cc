#include "converters/pipelines/reshard.h"

#include <filesystem>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/deepspeed/deepspeed_keys.h"
#include "converters/plan/stage_change.h"
#include "converters/plan/zero12_input.h"
#include "converters/plan/zero3_input.h"
#include "converters/plan/zero3_reshard.h"
#include "formats/base/status.h"
#include "ucp/staging_dir.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::pipelines {
namespace {

namespace fs = std::filesystem;
using formats::torch::Value;
using formats::torch::ValueKind;

// global_step<global_steps> of the model-states tree, DeepSpeed's default tag.
std::string DefaultTag(const Value* model_root) {
  const Value* v = model_root != nullptr ? model_root->Get(deepspeed::keys::kGlobalSteps) : nullptr;
  if (v != nullptr && v->is(ValueKind::kInt)) return absl::StrCat("global_step", v->int_value());
  return "global_step0";
}

absl::Status CheckTag(const std::string& tag) {
  if (tag.empty() || tag == "." || tag == ".." || tag.find('/') != std::string::npos ||
      tag.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("tag '", tag, "' is not a folder name"));
  }
  return absl::OkStatus();
}

bool UseDataBeforeExpertParallelism(const Value* model_root) {
  const Value* c = model_root != nullptr ? model_root->Get(deepspeed::keys::kDsConfig) : nullptr;
  const Value* v = c != nullptr && c->is_dict() ? c->Get(deepspeed::keys::kUseDataBeforeExpertParallelism) : nullptr;
  return v != nullptr && v->is(ValueKind::kBool) && v->bool_value();
}

// The plan target of the request `o` for an input whose expert parallelism is `source_ep`.
plan::ZeroTarget ResolveTarget(const ReshardOptions& o, int source_ep, const Value* model_root) {
  plan::ZeroTarget t;
  t.topology.dp = o.dp;
  t.topology.ep = o.autoep_size > 0 ? o.autoep_size : source_ep;
  t.topology.use_data_before_expert_parallelism = UseDataBeforeExpertParallelism(model_root);
  t.zero_stage = o.zero_stage;
  t.tag = o.tag;
  return t;
}

// Moves the planner's files under <tag>/ and adds `latest`.
absl::Status FinishPlan(const std::string& tag, plan::Plan* p) {
  for (plan::PlanFile& f : p->files) f.path = absl::StrCat(tag, "/", f.path);
  std::vector<std::byte> bytes;
  for (char c : tag) bytes.push_back(static_cast<std::byte>(c));
  const int src = static_cast<int>(p->sources.size());
  const uint64_t size = bytes.size();
  p->sources.push_back(plan::PlanSource{"<latest>", size, MemorySource(Buffer::FromVector(std::move(bytes)))});
  plan::PlanFile latest;
  latest.path = "latest";
  latest.role = plan::FileRole::kModelCopy;
  latest.size = size;
  latest.regions.push_back(plan::Region{0, size, {plan::CopyOp{src, 0, size, 0}}});
  p->files.push_back(std::move(latest));
  return plan::ValidatePlan(*p);
}

}  // namespace

bool IsUcpFolder(const std::string& dir) {
  std::error_code ec;
  return fs::exists(fs::path(dir) / store::OptimizerStatePath(), ec);
}

namespace {

// Keeps the files the plan's sources (and template Values) point into alive until execution.
struct Holder {
  std::vector<std::shared_ptr<const formats::torch::TorchFile>> files;
};

absl::StatusOr<std::pair<PlannedReshard, Holder>> PlanAny(const ReshardOptions& o) {
  plan::ZeroTarget target;
  PlannedReshard out;
  Holder holder;
  const Value* model_root = nullptr;
  std::optional<plan::Zero12Input> in12;
  std::optional<plan::Zero3Input> in3;
  if (IsUcpFolder(o.input)) {
    std::error_code ec;
    if (fs::exists(fs::path(o.input) / "mp_rank_00_model_states.pt", ec)) {
      UCP_ASSIGN_OR_RETURN(in12, plan::Zero12InputFromUcp(o.input));
    } else {
      UCP_ASSIGN_OR_RETURN(in3, plan::Zero3InputFromUcp(o.input));
    }
  } else {
    deepspeed::OpenOptions open;
    open.tag = o.input_tag;
    UCP_ASSIGN_OR_RETURN(deepspeed::CheckpointIndex index, deepspeed::OpenCheckpoint(o.input, open));
    if (index.kind.zero_stage == 3) {
      UCP_ASSIGN_OR_RETURN(in3, plan::Zero3InputFromIndex(index));
    } else {
      UCP_ASSIGN_OR_RETURN(in12, plan::Zero12InputFromIndex(index));
    }
  }
  if (in12.has_value()) {
    model_root = in12->model_root;
    target = ResolveTarget(o, in12->source_ep, model_root);
    UCP_ASSIGN_OR_RETURN(out.plan, plan::PlanUcpToZero12(*in12, target));
    holder.files = in12->files;
  } else {
    model_root = in3->model_root;
    UCP_RETURN_IF_ERROR(plan::CheckStageChange(in3->origin, 3, o.zero_stage));
    target = ResolveTarget(o, in3->source_ep, model_root);
    UCP_ASSIGN_OR_RETURN(out.plan, plan::PlanZero3Reshard(*in3, target));
    holder.files = in3->files;
  }
  out.tag = target.tag.empty() ? DefaultTag(model_root) : target.tag;
  UCP_RETURN_IF_ERROR(CheckTag(out.tag));
  UCP_RETURN_IF_ERROR(FinishPlan(out.tag, &out.plan));
  return std::make_pair(std::move(out), std::move(holder));
}

}  // namespace

absl::StatusOr<PlannedReshard> PlanReshard(const ReshardOptions& options) {
  UCP_ASSIGN_OR_RETURN(auto planned, PlanAny(options));
  return std::move(planned.first);
}

absl::StatusOr<ReshardResult> Reshard(const ReshardOptions& options) {
  if (options.output.empty()) return absl::InvalidArgumentError("no output folder given");
  UCP_ASSIGN_OR_RETURN(auto planned, PlanAny(options));
  const PlannedReshard& pr = planned.first;
  const Holder& holder = planned.second;
  std::vector<const ByteSource*> sources;
  for (const auto& f : holder.files) sources.push_back(&f->zip().source());
  for (size_t i = sources.size(); i < pr.plan.sources.size(); ++i) {
    if (pr.plan.sources[i].memory == nullptr) {
      return absl::InternalError(absl::StrCat("plan source ", i, " (", pr.plan.sources[i].path, ") has no bytes"));
    }
    sources.push_back(pr.plan.sources[i].memory.get());
  }
  const std::string output = store::NormalizeOutputPath(options.output);
  UCP_ASSIGN_OR_RETURN(std::unique_ptr<store::StagingDirectory> staging,
                       store::StagingDirectory::Create(output, {.force = options.force, .fsync = options.execute.fsync}));
  UCP_RETURN_IF_ERROR(staging->MakeDirs(pr.plan.Directories()));
  UCP_ASSIGN_OR_RETURN(execute::ExecuteResult executed,
                       execute::ExecutePlan(pr.plan, sources, staging->path(), options.execute));
  ReshardResult result;
  result.output = output;
  result.tag = pr.tag;
  result.info = pr.plan.info;
  result.files = executed.files.size();
  result.bytes = pr.plan.TotalBytes();
  result.stats = executed.stats;
  store::Manifest manifest;
  manifest.files = std::move(executed.files);
  UCP_RETURN_IF_ERROR(staging->Commit(manifest));
  return result;
}

}  // namespace ucp::converters::pipelines
