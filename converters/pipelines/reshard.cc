#include "converters/pipelines/reshard.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/execute/run_plan.h"
#include "converters/sinks/zero_folder_sink.h"
#include "converters/sources/sniff.h"
#include "formats/base/status.h"
#include "formats/deepspeed/deepspeed_keys.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::pipelines {
namespace {

namespace fs = std::filesystem;
using formats::torch::Value;
using formats::torch::ValueKind;

// global_step<global_steps> of the model-states tree, DeepSpeed's default tag.
std::string DefaultTag(const Value* model_root) {
  const Value* v =
      model_root != nullptr ? model_root->Get(formats::deepspeed::keys::kGlobalSteps) : nullptr;
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
  const Value* c =
      model_root != nullptr ? model_root->Get(formats::deepspeed::keys::kDsConfig) : nullptr;
  const Value* v = c != nullptr && c->is_dict()
                       ? c->Get(formats::deepspeed::keys::kUseDataBeforeExpertParallelism)
                       : nullptr;
  return v != nullptr && v->is(ValueKind::kBool) && v->bool_value();
}

// The sink target of the request `o` for an input read from `source`.
sinks::ZeroTarget ResolveTarget(const ReshardOptions& o, const sinks::ZeroSinkInput& source) {
  sinks::ZeroTarget t;
  t.topology.dp = o.dp;
  t.topology.tp = o.tp > 0 ? o.tp : source.topology.tp;
  t.topology.ep = o.autoep_size > 0 ? o.autoep_size : source.topology.ep;
  t.topology.use_data_before_expert_parallelism = UseDataBeforeExpertParallelism(source.model_root);
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
  p->sources.push_back(
      plan::PlanSource{"<latest>", size, MemorySource(Buffer::FromVector(std::move(bytes)))});
  plan::PlanFile latest;
  latest.path = "latest";
  latest.role = plan::FileRole::kModelCopy;
  latest.size = size;
  latest.regions.push_back(plan::Region{0, size, {plan::CopyOp{src, 0, size, 0}}});
  p->files.push_back(std::move(latest));
  return plan::ValidatePlan(*p);
}

// One input per TP rank of the checkpoint, from a UCP folder or a ZeRO folder as SniffCheckpoint
// decides; `read` gets the folder read (the UCP folder, or the ZeRO tag folder).
absl::StatusOr<std::vector<sinks::ZeroSinkInput>> OpenInput(const ReshardOptions& o,
                                                            std::string* read) {
  sources::SniffOptions sniff;
  sniff.tag = o.input_tag;
  UCP_ASSIGN_OR_RETURN(sources::SniffedCheckpoint input, sources::SniffCheckpoint(o.input, sniff));
  if (input.is_weights()) {
    return absl::InvalidArgumentError(
        absl::StrCat(o.input, ": ", ucp::SourceKindName(input.kind), " weights (", input.why,
                     ") hold no optimizer state; reshard reads a DeepSpeed ZeRO checkpoint or a "
                     "Universal Checkpoint"));
  }
  *read = input.path;
  if (input.is_universal()) return sinks::ZeroSinkInputsFromUcp(input.path, o.tp);
  UCP_ASSIGN_OR_RETURN(deepspeed::CheckpointIndex index, deepspeed::OpenCheckpoint(input.path));
  return sinks::ZeroSinkInputsFromIndex(index);
}

// A plan and the inputs whose files it reads (kept alive until it is written).
struct Planned {
  PlannedReshard planned;
  std::vector<sinks::ZeroSinkInput> inputs;
};

absl::StatusOr<Planned> PlanAny(const ReshardOptions& o) {
  Planned out;
  std::string read;
  UCP_ASSIGN_OR_RETURN(out.inputs, OpenInput(o, &read));
  UCP_ASSIGN_OR_RETURN(out.planned,
                       PlanZeroCheckpoint(out.inputs, ResolveTarget(o, out.inputs[0])));
  out.planned.inputs = {read};
  return out;
}

execute::RunOptions RunOptionsFor(const PlannedReshard& planned, const std::string& output,
                                  bool force, const std::vector<std::string>& save_folders,
                                  const execute::ExecuteOptions& execute) {
  execute::RunOptions run;
  run.output = output;
  run.force = force;
  run.inputs = planned.inputs;
  run.save_folders = save_folders;
  run.execute = execute;
  return run;
}

// Writes a plan of `input`'s files (RunPlan serves them; the plan carries the rest).
absl::StatusOr<ReshardResult> Write(const PlannedReshard& pr, const sinks::ZeroSinkInput& input,
                                    const execute::RunOptions& run) {
  std::vector<const ByteSource*> files;
  for (int i = 0; i < input.num_file_sources; ++i) files.push_back(input.sources[i].get());
  UCP_ASSIGN_OR_RETURN(execute::RunResult written, execute::RunPlan(pr.plan, files, run));
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

}  // namespace

absl::StatusOr<PlannedReshard> PlanZeroCheckpoint(absl::Span<const sinks::ZeroSinkInput> tp_ranks,
                                                  const sinks::ZeroTarget& target) {
  PlannedReshard out;
  const sinks::ZeroSinkInputs ranks(tp_ranks.begin(), tp_ranks.end());
  UCP_ASSIGN_OR_RETURN(out.plan, sinks::ZeroFolderSink(target).Plan(ranks));
  out.tag = target.tag.empty() ? DefaultTag(tp_ranks[0].model_root) : target.tag;
  UCP_RETURN_IF_ERROR(CheckTag(out.tag));
  UCP_RETURN_IF_ERROR(FinishPlan(out.tag, &out.plan));
  return out;
}

absl::StatusOr<PlannedReshard> PlanReshard(const ReshardOptions& options) {
  UCP_ASSIGN_OR_RETURN(Planned p, PlanAny(options));
  // A dry run refuses the overlap a run would.
  if (!options.output.empty()) {
    UCP_RETURN_IF_ERROR(execute::CheckOverlap(
        p.planned.plan,
        RunOptionsFor(p.planned, options.output, options.force, {options.input}, options.execute)));
  }
  return std::move(p.planned);
}

absl::StatusOr<ReshardResult> Reshard(const ReshardOptions& options) {
  if (options.output.empty()) return absl::InvalidArgumentError("no output folder given");
  UCP_ASSIGN_OR_RETURN(Planned p, PlanAny(options));
  return Write(
      p.planned, p.inputs[0],
      RunOptionsFor(p.planned, options.output, options.force, {options.input}, options.execute));
}

absl::StatusOr<ReshardResult> SaveZeroCheckpoint(const sinks::ZeroSinkInput& input,
                                                 const sinks::ZeroTarget& target,
                                                 const std::string& output,
                                                 const execute::ExecuteOptions& execute,
                                                 bool force) {
  if (output.empty()) return absl::InvalidArgumentError("no output folder given");
  UCP_ASSIGN_OR_RETURN(PlannedReshard planned,
                       PlanZeroCheckpoint(absl::MakeConstSpan(&input, 1), target));
  if (input.kind != sinks::SinkInputKind::kMemory) planned.inputs = {input.origin};
  return Write(planned, input, RunOptionsFor(planned, output, force, {}, execute));
}

}  // namespace ucp::converters::pipelines
