// libFuzzer target for TorchFile (zip container + pickle + storage index): any input must give a
// Status, never a crash or an allocation sized from the input. An accepted file must let every
// storage be read and every tensor be read (or refused as an over-limit overlapping view), and
// Verify must return a status. Build and run: fuzz/README.md.
#include <cstddef>
#include <cstdint>

#include "absl/container/flat_hash_set.h"
#include "formats/base/byte_source.h"
#include "formats/base/status.h"
#include "formats/torch/pickle_tree_check.h"
#include "formats/torch/torch_file.h"
#include "formats/torch/value_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ucp::formats::torch;
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  auto source = ucp::MemorySource(ucp::Buffer::CopyOf(absl::MakeConstSpan(bytes, size)), "fuzz.pt");
  TorchReadOptions options;
  options.pickle.max_expanded_values = int64_t{1} << 16;  // keeps the JSON rendering small
  absl::StatusOr<TorchFile> file = TorchFile::Open(source, options);
  if (!file.ok()) return 0;
  for (const StorageRef* storage : file->storages()) {
    UCP_CHECK(file->StorageBytes(*storage).ok()) << "accepted file with an unreadable storage";
  }
  absl::flat_hash_set<const Value*> seen;
  std::vector<const Value*> stack{&file->root()};
  while (!stack.empty()) {
    const Value* v = stack.back();
    stack.pop_back();
    if (!seen.insert(v).second) continue;
    if (v->is(ValueKind::kTensor)) {
      absl::StatusOr<ucp::Buffer> tensor = file->TensorBytes(v->tensor());
      UCP_CHECK(tensor.ok() || absl::IsDataLoss(tensor.status())) << tensor.status();
    }
    ForEachChild(*v, [&](const Value* c) { stack.push_back(c); });
  }
  (void)ValueToJson(file->root()).dump();
  (void)file->Verify();
  return 0;
}
