// libFuzzer target for the pickle VM (ParsePickle): any input must give a Status, never a crash,
// a hang or an allocation sized from the input; an accepted tree must render as JSON (the view
// `ucp inspect --json` prints). Build and run: fuzz/README.md.
#include <cstddef>
#include <cstdint>

#include "formats/base/status.h"
#include "formats/torch/pickle_reader.h"
#include "formats/torch/value_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ucp::formats::torch;
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  PickleLimits limits;
  limits.max_expanded_values = int64_t{1} << 16;  // keeps the JSON rendering small
  absl::StatusOr<PickleTree> tree = ParsePickle(absl::MakeConstSpan(bytes, size), limits);
  if (!tree.ok()) {
    UCP_CHECK(!tree.status().message().empty()) << "error without a message";
    return 0;
  }
  UCP_CHECK(tree->root != nullptr) << "accepted pickle without a root";
  (void)ValueToJson(*tree->root).dump();
  return 0;
}
