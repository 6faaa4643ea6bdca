// Source: the reader side of the Universal Checkpoint contract (docs/architecture.md "One pipeline
// shape"). Every kind of checkpoint ucp reads (a DeepSpeed ZeRO folder read as a virtual UCP, a UCP
// folder, a safetensors / .bin / HDF5 export) is opened into one Source: a list of parameters with
// their topology-independent ParamMeta, and, per parameter, the bytes of each state of the whole
// (merged) tensor.
//
// Where the bytes of a state are plain runs of files (ZeRO fragments, UCP .pt payloads,
// safetensors), StateMeta::runs lists them and the base class reads them; planners use the runs
// directly to emit CopyOps without reading a byte. Sources whose bytes need decoding (HDF5 zstd
// chunks) leave `runs` empty and override ReadState.
//
// Openers live next to the format they read (converters/deepspeed for ZeRO folders, ucp/ for UCP
// folders and exports); OpenSource (converters/sources/open_source.h) sniffs a path and picks one.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "formats/base/buffer.h"
#include "formats/base/byte_source.h"
#include "formats/base/dtype.h"
#include "formats/base/shape.h"
#include "formats/torch/torch_file.h"
#include "nlohmann/json.hpp"

namespace ucp {

enum class SourceKind : uint8_t {
  kZero,          // DeepSpeed ZeRO-0/1/2/3 tag folder (read in place)
  kUniversal,     // UCP folder (zero/<param>/*.pt), DeepSpeed's layout
  kSafetensors,   // one .safetensors file or a folder of shards with model.safetensors.index.json
  kTorchWeights,  // pytorch_model.bin (a flat state_dict), or a folder of .bin shards + index
  kHdf5,          // ucp's HDF5 export / UCP file
};
absl::string_view SourceKindName(
    SourceKind kind);  // "zero", "universal", "safetensors", "bin", "hdf5"

// The states of a parameter. Weights-only sources have only kFp32 (the stored weight, whatever
// its dtype); frozen parameters and buffers too.
enum class ParamState : uint8_t { kFp32, kExpAvg, kExpAvgSq };
inline constexpr int kNumParamStates = 3;
absl::string_view ParamStateName(ParamState state);  // "fp32", "exp_avg", "exp_avg_sq"
std::optional<ParamState> ParamStateFromName(
    absl::string_view name);  // also accepts "weight" → kFp32

// A contiguous byte range of one of the source's files.
struct ByteRun {
  int file = -1;  // index into Source::files()
  uint64_t offset = 0;
  uint64_t size = 0;
};

struct StateMeta {
  DType dtype = DType::kF32;
  // Concatenated in order, the row-major bytes of the whole merged tensor (ParamMeta::shape).
  // Empty when the source decodes (then use Source::ReadState).
  std::vector<ByteRun> runs;
};

enum class ParamRole : uint8_t {
  kTrainable,  // in the optimizer: has fp32 (master) and, in optimizer checkpoints, moments
  kFrozen,     // requires_grad = False: a weight, no optimizer state
  kBuffer,     // a module buffer (zero_to_fp32 exports them)
};

struct ParamMeta {
  std::string name;
  Shape shape;  // the merged, topology-independent shape (AutoEP experts: [num_experts, ...])
  ParamRole role = ParamRole::kTrainable;
  int param_group = -1;        // optimizer param group; -1 when unknown / not trainable
  bool expert = false;         // an expert weight (AutoEP fused or native MoE)
  int num_experts = 0;         // for experts
  std::string tied_to;         // non-empty: an alias of that parameter (shares its states)
  std::string partitioning;    // how the source stores it, for humans: "zero2 flat dp4", "zero3 dp4
                               // P=13", "whole"
  std::optional<double> step;  // the optimizer step of its group, where recorded
  std::array<std::optional<StateMeta>, kNumParamStates> states;  // indexed by ParamState

  const std::optional<StateMeta>& state(ParamState s) const { return states[static_cast<int>(s)]; }
  bool has_state(ParamState s) const { return state(s).has_value(); }
};

// What is known about the checkpoint as a whole (all optional by kind).
struct SourceInfo {
  std::string path;               // what was opened (the tag folder for ZeRO)
  std::string tag;                // ZeRO / UCP: the tag folder name
  std::optional<int64_t> step;    // global training step (global_steps / iteration)
  int zero_stage = -1;            // ZeRO: 0..3; -1 when not a ZeRO checkpoint
  std::string optimizer_wrapper;  // ZeRO: "DeepSpeedZeroOptimizer", "BF16_Optimizer", ...
  int dp_size = 1, tp_size = 1, pp_size = 1, ep_size = 1;
  DType master_dtype = DType::kF32;
  nlohmann::json param_groups =
      nlohmann::json::array();  // hyper-parameters per group (lr, betas, ...)
  nlohmann::json extra =
      nlohmann::json::object();  // kind-specific facts (AutoEP layers, metadata, ...)
};

class Source {
 public:
  virtual ~Source() = default;

  SourceKind kind() const { return kind_; }
  const SourceInfo& info() const { return info_; }
  const std::vector<ParamMeta>& params() const { return params_; }
  const ParamMeta* Find(absl::string_view name) const;
  // Files the runs refer to, opened (mapped where possible).
  const std::vector<std::shared_ptr<const ByteSource>>& files() const { return files_; }

  // Copies the whole merged tensor of `state` into `dest` (exactly numel * dtype size bytes).
  // NotFound if the parameter has no such state; InvalidArgument for a wrong dest size; the
  // file's read errors (DataLoss on short files).
  virtual absl::Status ReadState(const ParamMeta& param, ParamState state,
                                 absl::Span<std::byte> dest) const;
  // Bytes [offset, offset + dest.size()) of the state's whole merged tensor, reading only the runs
  // they fall in (a rank loading its partition). InvalidArgument past the tensor's end.
  absl::Status ReadStateRange(const ParamMeta& param, ParamState state, uint64_t offset,
                              absl::Span<std::byte> dest) const;
  // The state's bytes: zero-copy when they are one run of a mapped file, else a heap copy.
  absl::StatusOr<Buffer> StateBytes(const ParamMeta& param, ParamState state) const;

 protected:
  Source(SourceKind kind, SourceInfo info) : kind_(kind), info_(std::move(info)) {}
  // For openers: adds a parameter (names must be unique) / a file, returns the file's index.
  absl::Status AddParam(ParamMeta param);
  int AddFile(std::shared_ptr<const ByteSource> file);
  SourceInfo& mutable_info() { return info_; }

 private:
  SourceKind kind_;
  SourceInfo info_;
  std::vector<ParamMeta> params_;
  absl::flat_hash_map<std::string, size_t> by_name_;
  std::vector<std::shared_ptr<const ByteSource>> files_;
};

// Size in bytes of one state's merged tensor.
uint64_t StateNumBytes(const ParamMeta& param, ParamState state);

// The bytes of a tensor of a torch.save file as one run of the file (`file_index` is the file's
// index in the Source). Unimplemented for a non-contiguous view; DataLoss when the view runs past
// its storage record.
absl::StatusOr<ByteRun> TensorRun(const formats::torch::TorchFile& file,
                                  const formats::torch::TensorRef& tensor, int file_index);
// A tensor's contents as a StateMeta (dtype + one run).
absl::StatusOr<StateMeta> TensorState(const formats::torch::TorchFile& file,
                                      const formats::torch::TensorRef& tensor, int file_index);
// A pickled value as plain JSON for humans and scripts (hyper-parameters): str-keyed dicts →
// objects, tuples/lists → arrays, None → null, tensors → "tensor <dtype> <shape>", other objects →
// "<module.name>". Not lossless (formats/torch/value_json.h is).
nlohmann::json PlainJson(const formats::torch::Value& value);
// The value of a 0-dim (or one-element) tensor, an int or a float, as a double. DataLoss otherwise.
absl::StatusOr<double> ScalarValue(const formats::torch::TorchFile& file,
                                   const formats::torch::Value& value);

}  // namespace ucp
