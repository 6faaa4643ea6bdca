#include "converters/sinks/weights_sink.h"

#include <cstring>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "formats/base/byte_size.h"
#include "formats/base/status.h"
#include "formats/hdf5/h5_writer.h"
#include "formats/safetensors/safetensors_writer.h"
#include "nlohmann/json.hpp"
#include "ucp/torch_frame.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::sinks {
namespace {

using formats::torch::Value;
using formats::torch::ValueArena;
using Metadata = std::vector<std::pair<std::string, std::string>>;

// The plan every weights file is cut from: the collected tensors' sources, and the info.
plan::Plan StartPlan(const ucp::Source& source, ExportTensors& collected) {
  plan::Plan plan;
  plan.sources = std::move(collected.sources);
  plan.info.pipeline = "export";
  plan.info.input = source.info().path;
  plan.info.params = static_cast<int>(collected.tensors.size());
  return plan;
}

int AddMemory(plan::Plan& plan, const std::string& text, std::string what) {
  std::vector<std::byte> bytes(text.size());
  std::memcpy(bytes.data(), text.data(), text.size());
  const uint64_t size = bytes.size();
  plan.sources.push_back(
      plan::PlanSource{what, size, MemorySource(Buffer::FromVector(std::move(bytes)), what)});
  return static_cast<int>(plan.sources.size()) - 1;
}

Metadata SafetensorsMetadata(const ucp::Source& src, bool zero_to_fp32) {
  Metadata metadata = {{"format", "pt"}};
  if (zero_to_fp32) return metadata;
  const ucp::SourceInfo& i = src.info();
  metadata.emplace_back("ucp_source_kind", std::string(ucp::SourceKindName(src.kind())));
  if (i.step) metadata.emplace_back("ucp_step", absl::StrCat(*i.step));
  metadata.emplace_back("ucp_topology",
                        absl::StrFormat("zero_stage=%d dp=%d tp=%d pp=%d ep=%d", i.zero_stage,
                                        i.dp_size, i.tp_size, i.pp_size, i.ep_size));
  return metadata;
}

// Greedy in key order (HF split_torch_state_dict_into_shards); in a .bin an alias joins the shard
// of its target (they share a storage), in safetensors it is a tensor of its own.
std::vector<std::vector<int>> Shards(const std::vector<ExportTensor>& tensors, uint64_t max,
                                     bool shared_aliases) {
  std::vector<std::vector<int>> shards(1);
  std::vector<int> shard_of(tensors.size(), 0);
  uint64_t current = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const ExportTensor& t = tensors[i];
    if (t.alias_of >= 0 && shared_aliases) {
      shard_of[i] = shard_of[t.alias_of];
      shards[shard_of[i]].push_back(static_cast<int>(i));
      continue;
    }
    if (max > 0 && current > 0 && current + t.bytes > max) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(static_cast<int>(i));
    shard_of[i] = static_cast<int>(shards.size()) - 1;
    current += t.bytes;
  }
  return shards;
}

// The CopyOps filling `size` bytes at `dest` with the tensor's pieces.
void AppendOps(const ExportTensor& t, uint64_t dest, plan::Region* region) {
  for (const Piece& p : t.pieces) {
    region->ops.push_back(plan::CopyOp{p.source, p.offset, p.size, dest});
    dest += p.size;
  }
}

absl::Status PlanSafetensors(const std::vector<ExportTensor>& tensors,
                             const std::vector<int>& shard, const Metadata& metadata,
                             plan::Plan* plan, plan::PlanFile* file) {
  std::vector<formats::safetensors::TensorSpec> specs;
  for (int i : shard) specs.emplace_back(tensors[i].name, tensors[i].dtype, tensors[i].shape);
  UCP_ASSIGN_OR_RETURN(formats::safetensors::PlannedFile planned,
                       formats::safetensors::PlanFile(specs, metadata));
  file->size = planned.total_size;
  plan::Region region{0, planned.total_size, {}};
  const uint64_t header = planned.header_bytes.size();
  region.ops.push_back(
      plan::CopyOp{AddMemory(*plan, planned.header_bytes, "<safetensors header>"), 0, header, 0});
  for (size_t k = 0; k < shard.size(); ++k)
    AppendOps(tensors[shard[k]], planned.tensors[k].begin, &region);
  file->regions.push_back(std::move(region));
  return absl::OkStatus();
}

// A torch.save'd state_dict (an OrderedDict of tensors; aliases share their target's storage).
absl::Status PlanBin(const std::vector<ExportTensor>& tensors, const std::vector<int>& shard,
                     plan::PlanFile* file) {
  ValueArena arena;
  Value* root = arena.OrderedDict();
  std::map<int, Value*> tensor_value;
  std::map<const formats::torch::StorageRef*, int> storage_tensor;
  int key = 0;
  for (int i : shard) {
    const ExportTensor& t = tensors[i];
    if (t.alias_of >= 0) {
      arena.SetItem(root, t.name, tensor_value.at(t.alias_of));
      continue;
    }
    UCP_ASSIGN_OR_RETURN(int64_t numel, t.shape.NumElements());
    formats::torch::StorageRef* storage = arena.NewStorage(formats::torch::StorageRef{
        absl::StrCat(key++), t.dtype, "cpu", numel, false, std::nullopt});
    formats::torch::TensorRef ref;
    ref.storage = storage;
    ref.dtype = t.dtype;
    ref.shape = t.shape;
    ref.stride = t.shape.ContiguousStrides();
    Value* v = arena.Tensor(std::move(ref));
    tensor_value[i] = v;
    storage_tensor[storage] = i;
    arena.SetItem(root, t.name, v);
  }
  std::vector<const formats::torch::StorageRef*> storages;
  UCP_ASSIGN_OR_RETURN(ucp::TorchFrame frame,
                       ucp::FrameTorchFile(ucp::ArchiveRootFor(file->path), *root, &storages));
  file->size = frame.file_size;
  for (size_t k = 0; k < storages.size(); ++k) {
    plan::Region region{frame.storages[k].payload_offset, frame.storages[k].size, {}};
    AppendOps(tensors[storage_tensor.at(storages[k])], region.offset, &region);
    file->regions.push_back(std::move(region));
  }
  file->frame = std::move(frame);
  return absl::OkStatus();
}

plan::PlanFile IndexFile(const std::string& name, const nlohmann::json& weight_map, uint64_t total,
                         plan::Plan* plan) {
  nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  const std::string text = index.dump(2) + "\n";
  plan::PlanFile file;
  file.path = name;
  file.role = plan::FileRole::kWeights;
  file.size = text.size();
  file.regions.push_back(plan::Region{
      0, text.size(), {plan::CopyOp{AddMemory(*plan, text, "<index>"), 0, text.size(), 0}}});
  return file;
}

// The notes `ucp export` prints about shards: one file and no index, or a tensor over the limit.
void NoteShards(const std::vector<ExportTensor>& tensors, size_t shards, uint64_t max,
                plan::PlanInfo* info) {
  if (max == 0) return;
  for (const ExportTensor& t : tensors) {
    if (t.bytes > max && t.alias_of < 0) {
      info->warnings.push_back(absl::StrCat("tensor ", t.name, " (", HumanBytes(t.bytes),
                                            ") exceeds --max-shard-size (", HumanBytes(max),
                                            "): it has a shard of its own"));
    }
  }
  if (shards == 1) {
    info->notes.push_back(absl::StrCat("everything fits one shard of ", HumanBytes(max),
                                       ": one file, no index written"));
  }
}

// Tensor payload bytes of a shard set (aliases in a .bin share storage and count once).
uint64_t TotalBytes(const std::vector<ExportTensor>& tensors, bool shared_aliases) {
  uint64_t total = 0;
  for (const ExportTensor& t : tensors) total += t.alias_of >= 0 && shared_aliases ? 0 : t.bytes;
  return total;
}

}  // namespace

absl::string_view WeightsSink::name() const {
  return target_.format == WeightsFormat::kBin ? "bin" : "safetensors";
}

absl::StatusOr<plan::Plan> WeightsSink::Plan(const ucp::Source& source) const {
  if (target_.format == WeightsFormat::kHdf5)
    return absl::InvalidArgumentError("WeightsSink: use Hdf5Sink for HDF5");
  UCP_ASSIGN_OR_RETURN(ExportTensors collected, CollectExportTensors(source, target_));
  const std::vector<ExportTensor>& tensors = collected.tensors;
  plan::Plan plan = StartPlan(source, collected);
  const bool st = target_.format == WeightsFormat::kSafetensors;
  const std::vector<std::vector<int>> shards = Shards(tensors, target_.max_shard_size, !st);
  const int n = static_cast<int>(shards.size());
  const std::string stem = st ? "model" : "pytorch_model", ext = st ? ".safetensors" : ".bin";
  const Metadata metadata = SafetensorsMetadata(source, target_.zero_to_fp32);
  nlohmann::json weight_map = nlohmann::json::object();
  for (int s = 0; s < n; ++s) {
    plan::PlanFile file;
    file.path = n == 1 ? stem + ext : absl::StrFormat("%s-%05d-of-%05d%s", stem, s + 1, n, ext);
    file.role = plan::FileRole::kWeights;
    if (st) {
      UCP_RETURN_IF_ERROR(PlanSafetensors(tensors, shards[s], metadata, &plan, &file));
    } else {
      UCP_RETURN_IF_ERROR(PlanBin(tensors, shards[s], &file));
    }
    for (int i : shards[s]) weight_map[tensors[i].name] = file.path;
    plan.files.push_back(std::move(file));
  }
  if (n > 1)
    plan.files.push_back(
        IndexFile(stem + ext + ".index.json", weight_map, TotalBytes(tensors, !st), &plan));
  NoteShards(tensors, shards.size(), target_.max_shard_size, &plan.info);
  return plan;
}

absl::StatusOr<plan::Plan> Hdf5Sink::Plan(const ucp::Source& source) const {
  UCP_ASSIGN_OR_RETURN(ExportTensors collected, CollectExportTensors(source, target_));
  auto tensors = std::make_shared<const std::vector<ExportTensor>>(std::move(collected.tensors));
  plan::Plan plan = StartPlan(source, collected);
  plan.info.params = static_cast<int>(tensors->size());
  const ucp::SourceInfo& i = source.info();
  const std::string kind(ucp::SourceKindName(source.kind()));
  const std::optional<int64_t> step = i.step;
  const std::vector<int64_t> topology = {i.zero_stage, i.dp_size, i.tp_size, i.pp_size, i.ep_size};
  plan::PlanFile file;
  file.path = "model.h5";
  file.role = plan::FileRole::kWeights;
  file.size = TotalBytes(*tensors, false);
  file.writer = [tensors, kind, step,
                 topology](const plan::WriterContext& context) -> absl::Status {
    UCP_ASSIGN_OR_RETURN(formats::hdf5::H5Writer writer,
                         formats::hdf5::H5Writer::Create(context.path));
    for (const ExportTensor& t : *tensors) {
      std::vector<std::byte> bytes(t.bytes);  // one tensor in memory at a time
      uint64_t at = 0;
      for (const Piece& p : t.pieces) {
        UCP_RETURN_IF_ERROR(
            context.sources[p.source]->ReadAt(p.offset, absl::MakeSpan(bytes).subspan(at, p.size)));
        at += p.size;
      }
      UCP_RETURN_IF_ERROR(
          writer.WriteTensor(t.name, TensorView{t.dtype, t.shape, {}, bytes.data()}));
      if (!context.advance(t.bytes)) return absl::CancelledError("interrupted");
    }
    UCP_RETURN_IF_ERROR(writer.SetAttribute("/", "ucp_source_kind", kind));
    if (step)
      UCP_RETURN_IF_ERROR(writer.SetAttribute("/", "ucp_step", static_cast<int64_t>(*step)));
    UCP_RETURN_IF_ERROR(writer.SetAttribute("/", "ucp_topology", topology));
    return writer.Commit();
  };
  plan.files.push_back(std::move(file));
  return plan;
}

}  // namespace ucp::converters::sinks
