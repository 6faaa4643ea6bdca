#include "tests/hostile/read_all.h"

#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "formats/hdf5/h5_reader.h"
#include "formats/safetensors/safetensors_reader.h"
#include "formats/torch/pickle_tree_check.h"
#include "formats/torch/torch_file.h"
#include "formats/torch/value_json.h"

namespace ucp::testing {
namespace {

using formats::torch::TensorRef;
using formats::torch::TorchFile;
using formats::torch::Value;
using formats::torch::ValueKind;

Outcome Failed(Outcome out, Stage stage, absl::Status status) {
  out.stage = stage;
  out.status = std::move(status);
  return out;
}

uint64_t Mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001B3ull; }

uint64_t Touch(uint64_t h, const std::byte* data, size_t size) {
  for (size_t i = 0; i < size; ++i) h = Mix(h, std::to_integer<uint64_t>(data[i]));
  return h;
}

uint64_t Touch(uint64_t h, const std::string& s) {
  return Touch(h, reinterpret_cast<const std::byte*>(s.data()), s.size());
}

// Visits every node once (the pickle memo may share nodes) and returns the tensors in the tree.
std::vector<const TensorRef*> WalkTree(const Value& root, uint64_t* checksum) {
  std::vector<const TensorRef*> tensors;
  absl::flat_hash_set<const Value*> seen;
  std::vector<const Value*> stack{&root};
  while (!stack.empty()) {
    const Value* v = stack.back();
    stack.pop_back();
    if (!seen.insert(v).second) continue;
    *checksum = Mix(*checksum, static_cast<uint64_t>(v->kind()));
    *checksum = Touch(*checksum, v->str());
    *checksum = Touch(*checksum, v->name());
    if (v->is(ValueKind::kTensor)) {
      const TensorRef& t = v->tensor();
      tensors.push_back(&t);
      *checksum = Mix(*checksum, static_cast<uint64_t>(t.NumElements()));
      *checksum = Touch(*checksum, t.storage->key);
    }
    formats::torch::ForEachChild(*v, [&](const Value* c) { stack.push_back(c); });
  }
  return tensors;
}

}  // namespace

const char* StageName(Stage stage) {
  switch (stage) {
    case Stage::kOpen: return "open";
    case Stage::kRead: return "read";
    case Stage::kVerify: return "verify";
    case Stage::kDone: return "done";
  }
  return "?";
}

Outcome ReadAllTorch(std::shared_ptr<const ByteSource> source) {
  Outcome out;
  absl::StatusOr<TorchFile> file = TorchFile::Open(std::move(source));
  if (!file.ok()) return Failed(out, Stage::kOpen, file.status());
  std::vector<const TensorRef*> tensors = WalkTree(file->root(), &out.checksum);
  out.checksum = Touch(out.checksum, formats::torch::ValueToJson(file->root()).dump());
  for (const formats::torch::StorageRef* storage : file->storages()) {
    absl::StatusOr<Buffer> bytes = file->StorageBytes(*storage);
    if (!bytes.ok()) return Failed(out, Stage::kRead, bytes.status());
    out.checksum = Touch(out.checksum, bytes->data(), bytes->size());
  }
  for (const TensorRef* tensor : tensors) {
    absl::StatusOr<Buffer> bytes = file->TensorBytes(*tensor);
    if (!bytes.ok()) return Failed(out, Stage::kRead, bytes.status());
    out.checksum = Touch(out.checksum, bytes->data(), bytes->size());
    ++out.tensors;
  }
  if (absl::Status verified = file->Verify(); !verified.ok()) {
    return Failed(out, Stage::kVerify, verified);
  }
  return out;
}

Outcome ReadAllSafetensors(std::shared_ptr<const ByteSource> source) {
  using formats::safetensors::SafetensorsReader;
  Outcome out;
  absl::StatusOr<SafetensorsReader> reader = SafetensorsReader::Open(std::move(source));
  if (!reader.ok()) return Failed(out, Stage::kOpen, reader.status());
  for (const auto& [key, value] : reader->metadata()) {
    out.checksum = Touch(Touch(out.checksum, key), value);
  }
  for (const formats::safetensors::TensorInfo& info : reader->tensors()) {
    absl::StatusOr<SharedTensor> tensor = reader->Read(info);
    if (!tensor.ok()) return Failed(out, Stage::kRead, tensor.status());
    out.checksum = Touch(out.checksum, tensor->view.data, info.end - info.begin);
    ++out.tensors;
  }
  return out;
}

Outcome ReadAllHdf5(const std::string& path, int64_t max_read_bytes) {
  using formats::hdf5::H5Reader;
  Outcome out;
  absl::StatusOr<H5Reader> reader = H5Reader::Open(path);
  if (!reader.ok()) return Failed(out, Stage::kOpen, reader.status());
  auto touch_attributes = [&](const std::string& object) -> absl::Status {
    absl::StatusOr<formats::hdf5::AttrList> attributes = reader->Attributes(object);
    if (!attributes.ok()) return attributes.status();
    for (const auto& [name, value] : *attributes) {
      out.checksum = Mix(Touch(out.checksum, name), value.index());
    }
    return absl::OkStatus();
  };
  if (absl::Status s = touch_attributes("/"); !s.ok()) return Failed(out, Stage::kRead, s);
  for (const formats::hdf5::DatasetInfo& info : reader->datasets()) {
    if (absl::Status s = touch_attributes(info.path); !s.ok()) return Failed(out, Stage::kRead, s);
    absl::StatusOr<int64_t> num_bytes = info.shape.NumBytes(info.dtype);
    if (num_bytes.ok() && *num_bytes > max_read_bytes) {
      ++out.skipped;
      continue;
    }
    absl::StatusOr<SharedTensor> tensor = reader->Read(info.path);
    if (!tensor.ok()) return Failed(out, Stage::kRead, tensor.status());
    out.checksum = Touch(out.checksum, tensor->view.data,
                         num_bytes.ok() ? static_cast<size_t>(*num_bytes) : 0);
    ++out.tensors;
  }
  return out;
}

}  // namespace ucp::testing
