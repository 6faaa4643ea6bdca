// Strict reading of JSON config objects: every key a parser reads or knows is recorded, so that
// Finish() can reject the others, naming the full key path and the nearest known key. Type
// errors name the key path and the expected type. Torch-free.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace ucp::runtime {

// One looked-up key: `value` is null when the key is absent or JSON null (both mean "default").
struct JsonField {
  const nlohmann::json* value = nullptr;
  std::string path;  // full key path, e.g. "zero_optimization.stage"
  bool present() const { return value != nullptr; }
};

// Reads one JSON object field by field. `what` prefixes errors ("ds_config"); `path` is the
// object's own key path ("" for the root).
class StrictObject {
 public:
  StrictObject(const nlohmann::json& object, std::string what, std::string path);

  // Marks `key` (and `alias`, its second accepted name) known and returns it; when both names
  // are given, the first wins here and Finish() reports the conflict.
  JsonField Get(absl::string_view key, absl::string_view alias = {});
  // Marks keys as known and accepted without being read (DeepSpeed knobs without effect here).
  void Known(std::initializer_list<absl::string_view> keys);
  // InvalidArgument for the first key nobody asked for ("did you mean ...?" when one is close).
  absl::Status Finish() const;

  std::string KeyPath(absl::string_view key) const;
  const std::string& what() const { return what_; }

 private:
  const nlohmann::json& object_;
  std::string what_;
  std::string path_;
  std::vector<std::string> known_;
  std::vector<std::string> conflicts_;
};

// The nearest of `candidates` to `key` by edit distance, or "" when none is close enough to be
// a plausible typo.
std::string NearestKey(absl::string_view key, const std::vector<std::string>& candidates);

// Typed reads: leave *out unchanged when the field is absent; InvalidArgument naming the key and
// the expected type otherwise. Integers accept integral floats (DeepSpeed configs write 5e8).
absl::Status ReadBool(absl::string_view what, const JsonField& field, bool* out);
absl::Status ReadDouble(absl::string_view what, const JsonField& field, double* out);
absl::Status ReadInt(absl::string_view what, const JsonField& field, int64_t* out);
absl::Status ReadInt(absl::string_view what, const JsonField& field, int* out);
absl::Status ReadString(absl::string_view what, const JsonField& field, std::string* out);
// Requires a JSON object (or absent); `*object` is null when absent.
absl::Status ReadObject(absl::string_view what, const JsonField& field,
                        const nlohmann::json** object);

// "string \"abc\"", "number 3.5", ... for error messages.
std::string DescribeJson(const nlohmann::json& value);

// The JSON document of a regular file: NotFound / PermissionDenied naming `what` and the path,
// InvalidArgument for a FIFO, device or folder, or text that is not JSON.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path, absl::string_view what);

}  // namespace ucp::runtime
