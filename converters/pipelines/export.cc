#include "converters/pipelines/export.h"

#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "converters/deepspeed/expert_names.h"
#include "converters/plan/plan.h"
#include "converters/sources/expert_layouts.h"
#include "converters/sources/open_source.h"
#include "formats/base/cast_source.h"
#include "formats/base/status.h"
#include "formats/hdf5/h5_writer.h"
#include "formats/safetensors/safetensors_writer.h"
#include "nlohmann/json.hpp"
#include "ucp/manifest.h"
#include "ucp/staging_dir.h"
#include "ucp/torch_frame.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::pipelines {
namespace {

namespace fs = std::filesystem;
using formats::torch::Value;
using formats::torch::ValueArena;
using store::ParamMeta;
using store::ParamRole;
using store::ParamState;
using store::Source;

struct Piece {
  int source = -1;  // plan source
  uint64_t offset = 0;
  uint64_t size = 0;
};

struct OutTensor {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  std::vector<Piece> pieces;  // concatenated: the tensor's bytes
  uint64_t bytes = 0;
  int alias_of = -1;  // torch .bin: shares that tensor's storage
};

std::vector<Piece> Slice(const std::vector<Piece>& pieces, uint64_t offset, uint64_t length) {
  std::vector<Piece> out;
  uint64_t at = 0;
  for (const Piece& p : pieces) {
    const uint64_t begin = std::max(at, offset), end = std::min(at + p.size, offset + length);
    if (begin < end) out.push_back(Piece{p.source, p.offset + (begin - at), end - begin});
    at += p.size;
  }
  return out;
}

class ExportPlanner {
 public:
  ExportPlanner(const Source& source, const ExportOptions& options) : src_(source), o_(options) {
    for (const auto& f : src_.files()) plan_.sources.push_back(plan::PlanSource{f->name(), f->Size(), nullptr});
  }

  absl::Status CollectTensors();
  absl::Status PlanFiles();
  plan::Plan& plan() { return plan_; }
  const std::vector<OutTensor>& tensors() const { return tensors_; }
  const std::vector<std::string>& file_names() const { return names_; }
  absl::Status WriteHdf5(const std::string& dir) const;

 private:
  int AddSource(std::shared_ptr<const ByteSource> bytes) {
    plan_.sources.push_back(plan::PlanSource{bytes->name(), bytes->Size(), std::move(bytes)});
    return static_cast<int>(plan_.sources.size()) - 1;
  }
  int AddMemory(std::vector<std::byte> bytes, std::string what) {
    return AddSource(MemorySource(Buffer::FromVector(std::move(bytes)), std::move(what)));
  }
  absl::StatusOr<OutTensor> Tensor(const ParamMeta& p, bool to_float);
  absl::Status AddExpert(const ParamMeta& p, OutTensor t);
  absl::StatusOr<std::vector<std::byte>> Materialize(const OutTensor& t) const;

  const Source& src_;
  const ExportOptions& o_;
  plan::Plan plan_;
  std::vector<OutTensor> tensors_;
  std::vector<std::string> names_;
  std::map<std::string, std::pair<int, int>> fused_;  // AutoEP prefix → (w1, w3) tensor indices
  std::map<std::string, int> native_local_;  // native MoE layer prefix → local experts per EP rank
};

absl::StatusOr<OutTensor> ExportPlanner::Tensor(const ParamMeta& p, bool to_float) {
  const auto& state = p.state(ParamState::kFp32);
  if (!state) return absl::NotFoundError(absl::StrCat(src_.info().path, ": '", p.name, "' has no weight"));
  OutTensor t;
  t.name = p.name;
  t.shape = p.shape;
  t.dtype = state->dtype;
  DType target = state->dtype;
  if (to_float) target = DType::kF32;
  if (o_.dtype && IsCastableFloat(state->dtype)) target = *o_.dtype;
  UCP_ASSIGN_OR_RETURN(int64_t numel, p.shape.NumElements());
  if (target == state->dtype && (!state->runs.empty() || numel == 0)) {
    for (const store::ByteRun& r : state->runs) t.pieces.push_back(Piece{r.file, r.offset, r.size});
  } else if (numel > 0) {
    // The input bytes: the runs in the source's files, or the value the source computes.
    std::vector<CastInputRun> input;
    for (const store::ByteRun& r : state->runs) input.push_back(CastInputRun{src_.files()[r.file], r.offset, r.size});
    if (state->runs.empty()) {
      UCP_ASSIGN_OR_RETURN(Buffer bytes, src_.StateBytes(p, ParamState::kFp32));
      const uint64_t size = bytes.size();
      input.push_back(CastInputRun{MemorySource(std::move(bytes), absl::StrCat("<", p.name, ">")), 0, size});
    }
    std::shared_ptr<const ByteSource> out = input.back().source;
    if (target != state->dtype) {
      // Cast lazily, chunk by chunk as the executor reads: no whole cast copy in memory.
      UCP_ASSIGN_OR_RETURN(out, CastingSource(std::move(input), state->dtype, target, numel,
                                              absl::StrCat("<", p.name, " as ", DTypeName(target), ">")));
    }
    t.pieces.push_back(Piece{AddSource(out), 0, out->Size()});
  }
  t.dtype = target;
  t.bytes = static_cast<uint64_t>(numel) * DTypeSize(target);
  return t;
}

// AutoEP fused experts (<prefix>.w1/w2/w3, [E, ...]) in the HF layout, or one tensor per expert.
absl::Status ExportPlanner::AddExpert(const ParamMeta& p, OutTensor t) {
  // Native MoE: '<prefix>.deepspeed_experts.<local>.<rest>' stacks the EP ranks' local experts;
  // written per global expert E = ep_rank * n_local + local, as a model without EP names them.
  if (deepspeed::HasNativeExpertInfix(p.name) && t.shape.rank() >= 1) {
    const std::optional<deepspeed::NativeExpertName> native = deepspeed::ParseNativeExpertName(p.name);
    if (!native) return absl::DataLossError(absl::StrCat(src_.info().path, ": '", p.name, "' has no local expert id"));
    const int64_t ep = t.shape.dim(0);
    const int n_local = native_local_[native->prefix];
    const uint64_t per = ep > 0 ? t.bytes / static_cast<uint64_t>(ep) : 0;
    std::vector<int64_t> dims(t.shape.dims().begin() + 1, t.shape.dims().end());
    for (int64_t r = 0; r < ep; ++r) {
      OutTensor one;
      one.name = deepspeed::NativeExpertParamName(native->prefix, r * n_local + native->id, native->rest);
      one.dtype = t.dtype;
      one.shape = Shape(dims);
      one.pieces = Slice(t.pieces, r * per, per);
      one.bytes = per;
      tensors_.push_back(std::move(one));
    }
    return absl::OkStatus();
  }
  std::string prefix, leaf;
  const bool autoep = deepspeed::ParseAutoepExpertName(p.name, &prefix, &leaf) && t.shape.rank() == 3;
  if (!autoep || o_.zero_to_fp32) {
    tensors_.push_back(std::move(t));
    return absl::OkStatus();
  }
  const int64_t e = t.shape.dim(0);
  const uint64_t per = e > 0 ? t.bytes / static_cast<uint64_t>(e) : 0;
  if (o_.moe_layout == MoeLayout::kPerExpert) {
    for (int64_t i = 0; i < e; ++i) {
      OutTensor one;
      one.name = absl::StrCat(prefix, ".", i, ".", leaf);
      one.dtype = t.dtype;
      one.shape = Shape({t.shape.dim(1), t.shape.dim(2)});
      one.pieces = Slice(t.pieces, i * per, per);
      one.bytes = per;
      tensors_.push_back(std::move(one));
    }
    return absl::OkStatus();
  }
  if (leaf == "w2") {
    t.name = prefix + ".down_proj";
    tensors_.push_back(std::move(t));
    return absl::OkStatus();
  }
  // gate_up_proj [E, 2I, H]: per expert, w1's rows then w3's.
  auto& slot = fused_[prefix];
  if (slot.first == 0 && slot.second == 0) slot = {-1, -1};
  tensors_.push_back(std::move(t));
  (leaf == "w1" ? slot.first : slot.second) = static_cast<int>(tensors_.size()) - 1;
  if (slot.first < 0 || slot.second < 0) return absl::OkStatus();
  OutTensor w1 = tensors_[slot.first], w3 = tensors_[slot.second];
  if (!(w1.shape == w3.shape) || w1.dtype != w3.dtype) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, ": w1 ", w1.shape.ToString(), " and w3 ",
                                                   w3.shape.ToString(), " cannot fuse into gate_up_proj"));
  }
  OutTensor fused;
  fused.name = prefix + ".gate_up_proj";
  fused.dtype = w1.dtype;
  fused.shape = Shape({e, 2 * w1.shape.dim(1), w1.shape.dim(2)});
  fused.bytes = 2 * w1.bytes;
  for (int64_t i = 0; i < e; ++i) {
    for (const OutTensor* w : {&w1, &w3}) {
      for (const Piece& piece : Slice(w->pieces, i * per, per)) fused.pieces.push_back(piece);
    }
  }
  const int lo = std::min(slot.first, slot.second), hi = std::max(slot.first, slot.second);
  tensors_[hi].name.clear();  // dropped after collection (indices stay valid meanwhile)
  tensors_[lo] = std::move(fused);
  return absl::OkStatus();
}

absl::Status ExportPlanner::CollectTensors() {
  // zero_to_fp32's order: buffers, frozen parameters, trainable parameters, tied aliases.
  const ParamRole order[] = {ParamRole::kBuffer, ParamRole::kFrozen, ParamRole::kTrainable};
  std::map<std::string, int> index_of;
  native_local_ = sources::NativeLocalExperts(src_);
  for (ParamRole role : order) {
    if (role == ParamRole::kFrozen && o_.exclude_frozen) continue;
    for (const ParamMeta& p : src_.params()) {
      if (p.role != role || !p.tied_to.empty()) continue;
      UCP_ASSIGN_OR_RETURN(OutTensor t, Tensor(p, o_.zero_to_fp32 && role == ParamRole::kBuffer));
      if (p.expert) {
        UCP_RETURN_IF_ERROR(AddExpert(p, std::move(t)));
      } else {
        tensors_.push_back(std::move(t));
      }
    }
  }
  std::erase_if(tensors_, [](const OutTensor& t) { return t.name.empty(); });
  for (const auto& [prefix, slot] : fused_) {
    if (slot.first < 0 || slot.second < 0) {
      return absl::InvalidArgumentError(absl::StrCat(prefix, ": w1 or w3 missing; use --moe-layout per-expert"));
    }
  }
  for (size_t i = 0; i < tensors_.size(); ++i) index_of[tensors_[i].name] = static_cast<int>(i);
  for (const ParamMeta& p : src_.params()) {
    if (p.tied_to.empty()) continue;
    auto it = index_of.find(p.tied_to);
    if (it == index_of.end()) continue;
    OutTensor alias = tensors_[it->second];
    alias.name = p.name;
    alias.alias_of = it->second;
    tensors_.push_back(std::move(alias));
  }
  if (tensors_.empty()) return absl::InvalidArgumentError(absl::StrCat(src_.info().path, ": no tensors to export"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::byte>> ExportPlanner::Materialize(const OutTensor& t) const {
  std::vector<std::byte> out(t.bytes);
  uint64_t at = 0;
  for (const Piece& p : t.pieces) {
    const ByteSource* s = plan_.sources[p.source].memory ? plan_.sources[p.source].memory.get()
                                                         : src_.files()[p.source].get();
    UCP_RETURN_IF_ERROR(s->ReadAt(p.offset, absl::MakeSpan(out).subspan(at, p.size)));
    at += p.size;
  }
  return out;
}

absl::Status ExportPlanner::PlanFiles() {
  const bool st = o_.format == ExportFormat::kSafetensors;
  // Shards: greedy in key order (HF split_torch_state_dict_into_shards); aliases join their target.
  std::vector<std::vector<int>> shards(1);
  std::vector<int> shard_of(tensors_.size(), 0);
  uint64_t current = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const OutTensor& t = tensors_[i];
    if (t.alias_of >= 0 && !st) {
      shards[shard_of[t.alias_of]].push_back(static_cast<int>(i));
      shard_of[i] = shard_of[t.alias_of];
      continue;
    }
    if (o_.max_shard_size > 0 && current > 0 && current + t.bytes > o_.max_shard_size) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(static_cast<int>(i));
    shard_of[i] = static_cast<int>(shards.size()) - 1;
    current += t.bytes;
  }
  const int n = static_cast<int>(shards.size());
  const std::string stem = st ? "model" : "pytorch_model", ext = st ? ".safetensors" : ".bin";
  nlohmann::json weight_map = nlohmann::json::object();
  uint64_t total = 0;
  for (const OutTensor& t : tensors_) total += t.alias_of >= 0 && !st ? 0 : t.bytes;
  std::vector<std::pair<std::string, std::string>> metadata = {{"format", "pt"}};
  if (!o_.zero_to_fp32) {
    const store::SourceInfo& i = src_.info();
    metadata.emplace_back("ucp_source_kind", std::string(store::SourceKindName(src_.kind())));
    if (i.step) metadata.emplace_back("ucp_step", absl::StrCat(*i.step));
    metadata.emplace_back("ucp_topology", absl::StrFormat("zero_stage=%d dp=%d tp=%d pp=%d ep=%d", i.zero_stage,
                                                          i.dp_size, i.tp_size, i.pp_size, i.ep_size));
  }
  for (int s = 0; s < n; ++s) {
    const std::string name = n == 1 ? stem + ext : absl::StrFormat("%s-%05d-of-%05d%s", stem, s + 1, n, ext);
    names_.push_back(name);
    plan::PlanFile file;
    file.path = name;
    file.role = plan::FileRole::kModelCopy;
    if (st) {
      std::vector<formats::safetensors::TensorSpec> specs;
      for (int i : shards[s]) specs.emplace_back(tensors_[i].name, tensors_[i].dtype, tensors_[i].shape);
      UCP_ASSIGN_OR_RETURN(formats::safetensors::PlannedFile planned, formats::safetensors::PlanFile(specs, metadata));
      file.size = planned.total_size;
      plan::Region region{0, planned.total_size, {}};
      const uint64_t header = planned.header_bytes.size();
      std::vector<std::byte> header_bytes(header);
      std::memcpy(header_bytes.data(), planned.header_bytes.data(), header);
      region.ops.push_back(plan::CopyOp{AddMemory(std::move(header_bytes), "<safetensors header>"), 0, header, 0});
      for (size_t k = 0; k < shards[s].size(); ++k) {
        uint64_t dest = planned.tensors[k].begin;
        for (const Piece& p : tensors_[shards[s][k]].pieces) {
          region.ops.push_back(plan::CopyOp{p.source, p.offset, p.size, dest});
          dest += p.size;
        }
      }
      file.regions.push_back(std::move(region));
    } else {
      ValueArena arena;
      Value* root = arena.OrderedDict();
      std::map<int, Value*> tensor_value;
      std::map<const formats::torch::StorageRef*, int> storage_tensor;
      int key = 0;
      for (int i : shards[s]) {
        const OutTensor& t = tensors_[i];
        if (t.alias_of >= 0) {
          arena.SetItem(root, t.name, tensor_value.at(t.alias_of));
          continue;
        }
        UCP_ASSIGN_OR_RETURN(int64_t numel, t.shape.NumElements());
        formats::torch::StorageRef* storage =
            arena.NewStorage(formats::torch::StorageRef{absl::StrCat(key++), t.dtype, "cpu", numel, false, std::nullopt});
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
      UCP_ASSIGN_OR_RETURN(store::TorchFrame frame, store::FrameTorchFile(store::ArchiveRootFor(name), *root, &storages));
      file.size = frame.file_size;
      for (size_t k = 0; k < storages.size(); ++k) {
        const OutTensor& t = tensors_[storage_tensor.at(storages[k])];
        plan::Region region{frame.storages[k].payload_offset, frame.storages[k].size, {}};
        uint64_t dest = region.offset;
        for (const Piece& p : t.pieces) {
          region.ops.push_back(plan::CopyOp{p.source, p.offset, p.size, dest});
          dest += p.size;
        }
        file.regions.push_back(std::move(region));
      }
      file.frame = std::move(frame);
    }
    for (int i : shards[s]) weight_map[tensors_[i].name] = name;
    plan_.files.push_back(std::move(file));
  }
  if (n > 1) {
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    const std::string text = index.dump(2) + "\n";
    const std::string name = stem + ext + ".index.json";
    names_.push_back(name);
    std::vector<std::byte> bytes(text.size());
    std::memcpy(bytes.data(), text.data(), text.size());
    plan::PlanFile file;
    file.path = name;
    file.role = plan::FileRole::kModelCopy;
    file.size = text.size();
    file.regions.push_back(plan::Region{0, text.size(), {plan::CopyOp{AddMemory(std::move(bytes), "<index>"), 0, text.size(), 0}}});
    plan_.files.push_back(std::move(file));
  }
  plan_.info.pipeline = "export";
  plan_.info.input = src_.info().path;
  plan_.info.params = static_cast<int>(tensors_.size());
  return absl::OkStatus();
}

absl::Status ExportPlanner::WriteHdf5(const std::string& dir) const {
  UCP_ASSIGN_OR_RETURN(formats::hdf5::H5Writer writer, formats::hdf5::H5Writer::Create(dir + "/model.h5"));
  for (const OutTensor& t : tensors_) {
    UCP_ASSIGN_OR_RETURN(std::vector<std::byte> bytes, Materialize(t));
    TensorView view{t.dtype, t.shape, {}, bytes.data()};
    UCP_RETURN_IF_ERROR(writer.WriteTensor(t.name, view));
  }
  const store::SourceInfo& i = src_.info();
  UCP_RETURN_IF_ERROR(writer.SetAttribute("/", "ucp_source_kind", std::string(store::SourceKindName(src_.kind()))));
  if (i.step) UCP_RETURN_IF_ERROR(writer.SetAttribute("/", "ucp_step", static_cast<int64_t>(*i.step)));
  UCP_RETURN_IF_ERROR(writer.SetAttribute("/", "ucp_topology", std::vector<int64_t>{i.zero_stage, i.dp_size, i.tp_size,
                                                                                   i.pp_size, i.ep_size}));
  return writer.Commit();
}

}  // namespace

absl::StatusOr<ExportResult> Export(const ExportOptions& options) {
  if (options.output.empty()) return absl::InvalidArgumentError("no output folder given");
  sources::OpenSourceOptions open;
  open.tag = options.tag;
  UCP_ASSIGN_OR_RETURN(std::unique_ptr<Source> source, sources::OpenSource(options.input, open));
  ExportPlanner planner(*source, options);
  UCP_RETURN_IF_ERROR(planner.CollectTensors());
  ExportResult result;
  result.output = store::NormalizeOutputPath(options.output);
  result.tensors = planner.tensors().size();
  result.source_kind = std::string(store::SourceKindName(source->kind()));
  result.step = source->info().step;
  if (options.format != ExportFormat::kHdf5) {
    UCP_RETURN_IF_ERROR(planner.PlanFiles());
    result.files = planner.file_names();
    result.bytes = planner.plan().TotalBytes();
  } else {
    result.files = {"model.h5"};
    for (const OutTensor& t : planner.tensors()) result.bytes += t.bytes;
  }
  if (options.dry_run) return result;
  // zero_to_fp32 writes into an existing empty folder; so may we.
  std::error_code ec;
  if (fs::is_directory(result.output, ec) && fs::is_empty(result.output, ec)) fs::remove(result.output, ec);
  UCP_ASSIGN_OR_RETURN(std::unique_ptr<store::StagingDirectory> staging,
                       store::StagingDirectory::Create(result.output, {.force = options.force, .fsync = options.execute.fsync}));
  store::Manifest manifest;
  if (options.format == ExportFormat::kHdf5) {
    UCP_RETURN_IF_ERROR(planner.WriteHdf5(staging->path()));
    UCP_ASSIGN_OR_RETURN(store::ManifestEntry entry, store::HashFile(staging->path(), "model.h5"));
    manifest.files.push_back(entry);
  } else {
    const plan::Plan& plan = planner.plan();
    std::vector<const ByteSource*> sources;
    for (size_t i = 0; i < plan.sources.size(); ++i) {
      sources.push_back(plan.sources[i].memory ? plan.sources[i].memory.get() : source->files()[i].get());
    }
    UCP_ASSIGN_OR_RETURN(execute::ExecuteResult executed,
                         execute::ExecutePlan(plan, sources, staging->path(), options.execute));
    result.stats = executed.stats;
    manifest.files = std::move(executed.files);
  }
  UCP_RETURN_IF_ERROR(staging->Commit(manifest));
  return result;
}

}  // namespace ucp::converters::pipelines
