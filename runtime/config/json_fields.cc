#include "runtime/config/json_fields.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "formats/base/edit_distance.h"
#include "formats/base/status.h"

namespace ucp::runtime {
namespace {

absl::Status TypeError(absl::string_view what, const JsonField& field, absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": `", field.path, "` must be ", expected,
                                                 ", got ", DescribeJson(*field.value)));
}

}  // namespace

std::string DescribeJson(const nlohmann::json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  switch (value.type()) {
    case nlohmann::json::value_t::string: return "string " + text;
    case nlohmann::json::value_t::boolean: return "boolean " + text;
    case nlohmann::json::value_t::array: return "array " + text;
    case nlohmann::json::value_t::object: return "object " + text;
    case nlohmann::json::value_t::null: return "null";
    default: return "number " + text;
  }
}

StrictObject::StrictObject(const nlohmann::json& object, std::string what, std::string path)
    : object_(object), what_(std::move(what)), path_(std::move(path)) {}

std::string StrictObject::KeyPath(absl::string_view key) const {
  return path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key);
}

JsonField StrictObject::Get(absl::string_view key, absl::string_view alias) {
  known_.emplace_back(key);
  if (!alias.empty()) known_.emplace_back(alias);
  JsonField field;
  field.path = KeyPath(key);
  auto it = object_.find(std::string(key));
  const bool has_key = it != object_.end();
  if (has_key && !it->is_null()) field.value = &*it;
  if (!alias.empty()) {
    auto alias_it = object_.find(std::string(alias));
    if (alias_it != object_.end()) {
      if (has_key) {
        conflicts_.push_back(absl::StrCat("`", KeyPath(key), "` and its alias `", KeyPath(alias),
                                          "` are both given"));
      } else {
        field.path = KeyPath(alias);
        if (!alias_it->is_null()) field.value = &*alias_it;
      }
    }
  }
  return field;
}

void StrictObject::Known(std::initializer_list<absl::string_view> keys) {
  for (absl::string_view key : keys) known_.emplace_back(key);
}

absl::Status StrictObject::Finish() const {
  if (!conflicts_.empty())
    return absl::InvalidArgumentError(absl::StrCat(what_, ": ", conflicts_[0]));
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    if (std::find(known_.begin(), known_.end(), it.key()) != known_.end()) continue;
    std::string message = absl::StrCat(what_, ": unknown key `", KeyPath(it.key()), "`");
    const std::string nearest = NearestKey(it.key(), known_);
    if (!nearest.empty()) absl::StrAppend(&message, "; did you mean `", KeyPath(nearest), "`?");
    return absl::InvalidArgumentError(message);
  }
  return absl::OkStatus();
}

std::string NearestKey(absl::string_view key, const std::vector<std::string>& candidates) {
  // A typo is a few edits, relative to the length: "reduce_bucket_sz" (2 of 18) is one,
  // "stage" -> "dtype" (2 of 5) is not.
  const size_t limit = std::max<size_t>(1, std::min<size_t>(4, key.size() / 4));
  std::string best;
  size_t best_distance = limit + 1;
  for (const std::string& candidate : candidates) {
    const size_t distance = EditDistance(key, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  return best;
}

absl::Status ReadBool(absl::string_view what, const JsonField& field, bool* out) {
  if (!field.present()) return absl::OkStatus();
  if (!field.value->is_boolean()) return TypeError(what, field, "a boolean");
  *out = field.value->get<bool>();
  return absl::OkStatus();
}

absl::Status ReadDouble(absl::string_view what, const JsonField& field, double* out) {
  if (!field.present()) return absl::OkStatus();
  if (!field.value->is_number()) return TypeError(what, field, "a number");
  *out = field.value->get<double>();
  return absl::OkStatus();
}

absl::Status ReadInt(absl::string_view what, const JsonField& field, int64_t* out) {
  if (!field.present()) return absl::OkStatus();
  const nlohmann::json& v = *field.value;
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return TypeError(what, field, "an integer that fits in 64 bits");
    }
    *out = static_cast<int64_t>(v.get<uint64_t>());
  } else if (v.is_number_integer()) {
    *out = v.get<int64_t>();
  } else if (v.is_number_float()) {
    // 5e8 is a float in JSON; DeepSpeed accepts it for integer fields when integral.
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || d < -9.2233720368547758e18 ||
        d >= 9.2233720368547758e18) {
      return TypeError(what, field, "an integer");
    }
    *out = static_cast<int64_t>(d);
  } else {
    return TypeError(what, field, "an integer");
  }
  return absl::OkStatus();
}

absl::Status ReadInt(absl::string_view what, const JsonField& field, int* out) {
  int64_t value = *out;
  if (absl::Status s = ReadInt(what, field, &value); !s.ok()) return s;
  if (value < std::numeric_limits<int>::min() || value > std::numeric_limits<int>::max()) {
    return TypeError(what, field, "a 32-bit integer");
  }
  *out = static_cast<int>(value);
  return absl::OkStatus();
}

absl::Status ReadString(absl::string_view what, const JsonField& field, std::string* out) {
  if (!field.present()) return absl::OkStatus();
  if (!field.value->is_string()) return TypeError(what, field, "a string");
  *out = field.value->get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadObject(absl::string_view what, const JsonField& field,
                        const nlohmann::json** object) {
  *object = nullptr;
  if (!field.present()) return absl::OkStatus();
  if (!field.value->is_object()) return TypeError(what, field, "an object");
  *object = field.value;
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path, absl::string_view what) {
  // A FIFO or a device would block or never end: only regular files (symlinks to them are fine).
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return ErrnoToStatus(errno, absl::StrCat(what, " ", path));
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, ": not a regular file (a FIFO, device or folder)"));
  }
  std::ifstream in(path);
  if (!in) return ErrnoToStatus(errno, absl::StrCat(what, " ", path));
  std::stringstream text;
  text << in.rdbuf();
  try {
    return nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON: ", e.what()));
  }
}

}  // namespace ucp::runtime
