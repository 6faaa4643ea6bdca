#include "converters/pipelines/reshard.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/deepspeed/deepspeed_keys.h"
#include "converters/sinks/zero/zero_sink.h"
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

// The sink target of the request `o` for an input whose expert parallelism is `source_ep`.
sinks::ZeroTarget ResolveTarget(const ReshardOptions& o, const sinks::ZeroSinkInput& source) {
  const Value* model_root = source.model_root;
  const int source_ep = source.topology.ep;
  sinks::ZeroTarget t;
  t.topology.dp = o.dp;
  t.topology.tp = o.tp > 0 ? o.tp : source.topology.tp;
  t.topology.ep = o.autoep_size > 0 ? o.autoep_size : source_ep;
  t.topology.use_data_before_expert_parallelism = UseDataBeforeExpertParallelism(model_root);
  t.zero_stage = o.zero_stage;
  t.tag = o.tag;
  t.max_metadata_bytes = std::max(o.execute.memory_limit, sinks::kMaxSinkMetadataBytes);
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

// One input per TP rank of the checkpoint.
absl::StatusOr<std::vector<sinks::ZeroSinkInput>> OpenInput(const ReshardOptions& o) {
  if (IsUcpFolder(o.input)) return sinks::ZeroSinkInputsFromUcp(o.input, o.tp);
  deepspeed::OpenOptions open;
  open.tag = o.input_tag;
  UCP_ASSIGN_OR_RETURN(deepspeed::CheckpointIndex index, deepspeed::OpenCheckpoint(o.input, open));
  return sinks::ZeroSinkInputsFromIndex(index);
}

// Writes a planned tag folder (and `latest`) as `output`: staging, copies, manifest, commit.
absl::StatusOr<ReshardResult> WritePlanned(const PlannedReshard& pr, const std::string& output_path, bool force,
                                           const execute::ExecuteOptions& execute_options) {
  std::vector<const ByteSource*> sources;
  for (size_t i = 0; i < pr.plan.sources.size(); ++i) {
    if (pr.plan.sources[i].memory == nullptr) {
      return absl::InternalError(absl::StrCat("plan source ", i, " (", pr.plan.sources[i].path, ") has no bytes"));
    }
    sources.push_back(pr.plan.sources[i].memory.get());
  }
  const std::string output = store::NormalizeOutputPath(output_path);
  UCP_ASSIGN_OR_RETURN(std::unique_ptr<store::StagingDirectory> staging,
                       store::StagingDirectory::Create(output, {.force = force, .fsync = execute_options.fsync}));
  UCP_RETURN_IF_ERROR(staging->MakeDirs(pr.plan.Directories()));
  UCP_ASSIGN_OR_RETURN(execute::ExecuteResult executed,
                       execute::ExecutePlan(pr.plan, sources, staging->path(), execute_options));
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

}  // namespace

absl::StatusOr<PlannedReshard> PlanZeroCheckpoint(absl::Span<const sinks::ZeroSinkInput> tp_ranks,
                                                  const sinks::ZeroTarget& target) {
  PlannedReshard out;
  UCP_ASSIGN_OR_RETURN(out.plan, sinks::PlanZeroSink(tp_ranks, target));
  out.tag = target.tag.empty() ? DefaultTag(tp_ranks[0].model_root) : target.tag;
  UCP_RETURN_IF_ERROR(CheckTag(out.tag));
  UCP_RETURN_IF_ERROR(FinishPlan(out.tag, &out.plan));
  return out;
}

absl::StatusOr<PlannedReshard> PlanReshard(const ReshardOptions& options) {
  UCP_ASSIGN_OR_RETURN(std::vector<sinks::ZeroSinkInput> inputs, OpenInput(options));
  return PlanZeroCheckpoint(inputs, ResolveTarget(options, inputs[0]));
}

absl::StatusOr<ReshardResult> SaveZeroCheckpoint(const sinks::ZeroSinkInput& input, const sinks::ZeroTarget& target,
                                                 const std::string& output, const execute::ExecuteOptions& execute,
                                                 bool force) {
  if (output.empty()) return absl::InvalidArgumentError("no output folder given");
  UCP_ASSIGN_OR_RETURN(PlannedReshard planned, PlanZeroCheckpoint(absl::MakeConstSpan(&input, 1), target));
  return WritePlanned(planned, output, force, execute);
}

absl::StatusOr<ReshardResult> Reshard(const ReshardOptions& options) {
  if (options.output.empty()) return absl::InvalidArgumentError("no output folder given");
  UCP_ASSIGN_OR_RETURN(PlannedReshard planned, PlanReshard(options));
  return WritePlanned(planned, options.output, options.force, options.execute);
}

}  // namespace ucp::converters::pipelines
