#include "converters/pipelines/reshard.h"

#include <filesystem>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/deepspeed/deepspeed_keys.h"
#include "converters/execute/run_plan.h"
#include "converters/plan/zero12_input.h"
#include "converters/plan/zero3_input.h"
#include "converters/sinks/zero_folder_sink.h"
#include "converters/sources/sniff.h"
#include "formats/base/status.h"
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

// Keeps the files the plan's sources (and template Values) point into alive until execution.
struct Holder {
  std::vector<std::shared_ptr<const formats::torch::TorchFile>> files;
};

// Reads the ZeRO sink's input from a UCP folder or a ZeRO folder, as SniffCheckpoint decides;
// `read` gets the folder read (the UCP folder, or the ZeRO tag folder).
absl::StatusOr<sinks::ZeroSinkInput> ReadInput(const ReshardOptions& o, std::string* read) {
  sources::SniffOptions sniff;
  sniff.tag = o.input_tag;
  UCP_ASSIGN_OR_RETURN(sources::SniffedCheckpoint input, sources::SniffCheckpoint(o.input, sniff));
  if (input.is_weights()) {
    return absl::InvalidArgumentError(
        absl::StrCat(o.input, ": ", store::SourceKindName(input.kind), " weights (", input.why,
                     ") hold no optimizer state; reshard reads a DeepSpeed ZeRO checkpoint or a "
                     "Universal Checkpoint"));
  }
  *read = input.path;
  if (input.is_universal()) {
    std::error_code ec;
    if (fs::exists(fs::path(input.path) / "mp_rank_00_model_states.pt", ec)) {
      return plan::Zero12InputFromUcp(input.path);
    }
    return plan::Zero3InputFromUcp(input.path);
  }
  UCP_ASSIGN_OR_RETURN(deepspeed::CheckpointIndex index, deepspeed::OpenCheckpoint(input.path));
  if (index.topology.zero_stage == 3) return plan::Zero3InputFromIndex(index);
  return plan::Zero12InputFromIndex(index);
}

absl::StatusOr<std::pair<PlannedReshard, Holder>> PlanAny(const ReshardOptions& o) {
  PlannedReshard out;
  Holder holder;
  std::string read;
  UCP_ASSIGN_OR_RETURN(sinks::ZeroSinkInput input, ReadInput(o, &read));
  out.inputs = {read};
  UCP_ASSIGN_OR_RETURN(out.plan, sinks::ZeroFolderSink(o.target).Plan(input));
  holder.files = sinks::InputFiles(input);
  out.tag = o.target.tag.empty() ? DefaultTag(sinks::ModelRoot(input)) : o.target.tag;
  UCP_RETURN_IF_ERROR(CheckTag(out.tag));
  UCP_RETURN_IF_ERROR(FinishPlan(out.tag, &out.plan));
  return std::make_pair(std::move(out), std::move(holder));
}

execute::RunOptions RunOptionsFor(const PlannedReshard& planned, const ReshardOptions& options) {
  execute::RunOptions run;
  run.output = options.output;
  run.force = options.force;
  run.inputs = planned.inputs;
  run.save_folders = {options.input};
  run.execute = options.execute;
  return run;
}

}  // namespace

absl::StatusOr<PlannedReshard> PlanReshard(const ReshardOptions& options) {
  UCP_ASSIGN_OR_RETURN(auto planned, PlanAny(options));
  // A dry run refuses the overlap a run would.
  if (!options.output.empty()) {
    UCP_RETURN_IF_ERROR(
        execute::CheckOverlap(planned.first.plan, RunOptionsFor(planned.first, options)));
  }
  return std::move(planned.first);
}

absl::StatusOr<ReshardResult> Reshard(const ReshardOptions& options) {
  if (options.output.empty()) return absl::InvalidArgumentError("no output folder given");
  UCP_ASSIGN_OR_RETURN(auto planned, PlanAny(options));
  const PlannedReshard& pr = planned.first;
  // The plan's first sources are the input's files; the rest are bytes the planner computed.
  std::vector<const ByteSource*> files;
  for (const auto& f : planned.second.files) files.push_back(&f->zip().source());
  UCP_ASSIGN_OR_RETURN(execute::RunResult written,
                       execute::RunPlan(pr.plan, files, RunOptionsFor(pr, options)));
  ReshardResult result;
  result.output = written.output;
  result.staging = written.staging;
  result.removed_stale_partial = written.removed_stale_partial;
  result.tag = pr.tag;
  result.info = pr.plan.info;
  result.files = written.files.size();
  result.bytes = written.bytes;
  result.stats = written.stats;
  return result;
}

}  // namespace ucp::converters::pipelines
