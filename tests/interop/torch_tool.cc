// Test driver for the torch interop tests (test_torch_interop.py):
//   torch_tool dump IN.pt OUT_PREFIX   tree as JSON (OUT_PREFIX.json; value_json.h encoding) and
//                                      every tensor's row-major bytes (OUT_PREFIX.bin; each tensor
//                                      object gets "data": [offset, nbytes] into it)
//   torch_tool rewrite IN.pt OUT.pt     read with TorchFile, write back with WriteTorchFile
//   torch_tool sample OUT.pt            a tree built in C++ with every value kind
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "formats/torch/torch_file.h"
#include "formats/torch/torch_writer.h"
#include "formats/torch/value_json.h"
#include "tests/interop/torch_sample.h"

namespace ucp::formats::torch {
namespace {

int Fail(const absl::Status& s) {
  std::cerr << "error: " << s << "\n";
  return 1;
}

int Dump(const std::string& in, const std::string& prefix) {
  absl::StatusOr<TorchFile> file = TorchFile::OpenPath(in);
  if (!file.ok()) return Fail(file.status());
  std::ofstream bin(prefix + ".bin", std::ios::binary);
  uint64_t offset = 0;
  absl::Status error;
  nlohmann::json tree = ValueToJson(file->root(), [&](const TensorRef& t, nlohmann::json& j) {
    absl::StatusOr<Buffer> bytes = file->TensorBytes(t);
    if (!bytes.ok()) {
      error = bytes.status();
      return;
    }
    bin.write(reinterpret_cast<const char*>(bytes->data()),
              static_cast<std::streamsize>(bytes->size()));
    j["data"] = {offset, bytes->size()};
    offset += bytes->size();
  });
  if (!error.ok()) return Fail(error);
  std::ofstream(prefix + ".json") << tree.dump();
  return bin.good() ? 0 : 1;
}

int Rewrite(const std::string& in, const std::string& out) {
  absl::StatusOr<TorchFile> file = TorchFile::OpenPath(in);
  if (!file.ok()) return Fail(file.status());
  absl::Status s = SaveTorchFile(out, file->root(), file->BytesFn());
  return s.ok() ? 0 : Fail(s);
}

int Sample(const std::string& out) {
  ValueArena arena;
  const Value* root = BuildSampleTree(arena);
  absl::Status s = SaveTorchFile(out, *root);
  return s.ok() ? 0 : Fail(s);
}

}  // namespace
}  // namespace ucp::formats::torch

int main(int argc, char** argv) {
  using namespace ucp::formats::torch;
  std::string verb = argc > 1 ? argv[1] : "";
  if (verb == "dump" && argc == 4) return Dump(argv[2], argv[3]);
  if (verb == "rewrite" && argc == 4) return Rewrite(argv[2], argv[3]);
  if (verb == "sample" && argc == 3) return Sample(argv[2]);
  std::cerr << "usage: torch_tool dump IN.pt OUT_PREFIX | rewrite IN.pt OUT.pt | sample OUT.pt\n";
  return 2;
}
