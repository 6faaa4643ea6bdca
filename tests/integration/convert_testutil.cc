#include "tests/integration/convert_testutil.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "formats/base/crc32.h"
#include "formats/base/scratch_dir_testutil.h"
#include "formats/base/status.h"
#include "formats/torch/torch_file.h"
#include "formats/torch/torch_writer.h"
#include "formats/torch/value_json.h"
#include "ucp/manifest.h"
#include "ucp/shard_layout.h"

namespace ucp::testing {
namespace {

namespace fs = std::filesystem;
using formats::torch::StorageRef;
using formats::torch::TensorRef;
using formats::torch::TorchFile;
using formats::torch::Value;
using formats::torch::ValueArena;
using formats::torch::ValueKind;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Short(const nlohmann::json& j) {
  std::string s = j.dump();
  return s.size() > 120 ? s.substr(0, 117) + "..." : s;
}

// dict[key] = value in a tree the caller owns.
void Set(ValueArena& arena, const Value& dict, absl::string_view key, const Value* value) {
  Value& d = const_cast<Value&>(dict);
  for (size_t i = 0; i < d.entries().size(); ++i) {
    if (d.entries()[i].first->is(ValueKind::kStr) && d.entries()[i].first->str() == key) {
      ValueArena::ReplaceValue(&d, i, value);
      return;
    }
  }
  arena.SetItem(&d, key, value);
}

// A 1-D f32 tensor like `like` (requires_grad, rebuild kind) over `n` new deterministic elements.
const Value* NewFlatTensor(ValueArena& arena, const TensorRef& like, int64_t n, uint32_t seed) {
  std::string bytes(static_cast<size_t>(n) * 4, '\0');
  float* p = reinterpret_cast<float*>(bytes.data());
  for (int64_t i = 0; i < n; ++i)
    p[i] = static_cast<float>((i * 2654435761u + seed) % 100003) * 1e-5f;
  StorageRef s;
  s.key = absl::StrCat("g", seed);
  s.dtype = DType::kF32;
  s.location = "cpu";
  s.numel = n;
  s.bytes = Buffer::CopyOf(bytes);
  TensorRef t = like;
  t.storage = arena.NewStorage(std::move(s));
  t.dtype = DType::kF32;
  t.storage_offset = 0;
  t.shape = Shape({n});
  t.stride = {1};
  return arena.Tensor(std::move(t));
}

}  // namespace

std::string FixtureCase(const std::string& name) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  const bool in_set = name.find('/') != std::string::npos;  // "deepspeed_tp/<case>"
  return absl::StrCat(root != nullptr ? root : ".", "/fixtures/", in_set ? "" : "deepspeed/", name);
}

ScratchDir::ScratchDir(const std::string& label)
    : path_(testutil::ScratchDir::Make(label).string()) {}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

absl::StatusOr<nlohmann::json> TorchFileDigest(const std::string& path) {
  UCP_ASSIGN_OR_RETURN(TorchFile file, TorchFile::OpenPath(path));
  absl::Status error;
  nlohmann::json tree =
      formats::torch::ValueToJson(file.root(), [&](const TensorRef& t, nlohmann::json& j) {
        absl::StatusOr<Buffer> data = file.TensorBytes(t);
        absl::StatusOr<Buffer> storage = file.StorageBytes(*t.storage);
        if (!data.ok() || !storage.ok()) {
          error = data.ok() ? storage.status() : data.status();
          return;
        }
        j["data_crc32"] = Crc32(data->span());
        j["storage_crc32"] = Crc32(storage->span());
      });
  UCP_RETURN_IF_ERROR(error);
  return tree;
}

std::string FirstDifference(const nlohmann::json& a, const nlohmann::json& b,
                            const std::string& path) {
  const std::string here = path.empty() ? "<root>" : path;
  if (a.type() != b.type())
    return absl::StrCat(here, ": ours ", Short(a), ", DeepSpeed's ", Short(b));
  if (a.is_object()) {
    std::set<std::string> keys;
    for (const auto& [k, v] : a.items()) keys.insert(k);
    for (const auto& [k, v] : b.items()) keys.insert(k);
    for (const std::string& k : keys) {
      if (!a.contains(k) || !b.contains(k)) {
        return absl::StrCat(here, ".", k, ": only in ", a.contains(k) ? "ours" : "DeepSpeed's");
      }
      std::string d = FirstDifference(a[k], b[k], absl::StrCat(path, ".", k));
      if (!d.empty()) return d;
    }
    return "";
  }
  if (a.is_array()) {
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
      // Dict entries are [key, value] pairs: name the key in the path.
      std::string step = absl::StrCat("[", i, "]");
      if (a[i].is_array() && a[i].size() == 2 && a[i][0].is_string() && path.size() >= 5 &&
          (absl::EndsWith(path, "dict"))) {
        step = absl::StrCat("['", a[i][0].get<std::string>(), "']");
      }
      std::string d = FirstDifference(a[i], b[i], absl::StrCat(path, step));
      if (!d.empty()) return d;
    }
    if (a.size() != b.size())
      return absl::StrCat(here, ": ", a.size(), " items, DeepSpeed's ", b.size());
    return "";
  }
  if (a != b) return absl::StrCat(here, ": ours ", Short(a), ", DeepSpeed's ", Short(b));
  return "";
}

absl::StatusOr<FolderComparison> CompareFolders(const std::string& ours, const std::string& theirs,
                                                const std::string& ignore) {
  UCP_ASSIGN_OR_RETURN(std::vector<std::string> mine, ucp::ListFiles(ours));
  UCP_ASSIGN_OR_RETURN(std::vector<std::string> expected, ucp::ListFiles(theirs));
  FolderComparison out;
  const std::set<std::string> mine_set(mine.begin(), mine.end());
  const std::set<std::string> expected_set(expected.begin(), expected.end());
  for (const std::string& f : expected) {
    if (!mine_set.contains(f)) out.problems.push_back(absl::StrCat(f, ": missing"));
  }
  for (const std::string& f : mine) {
    if (!expected_set.contains(f) && f != ignore)
      out.problems.push_back(absl::StrCat(f, ": not in DeepSpeed's"));
  }
  for (const std::string& f : expected) {
    if (!mine_set.contains(f)) continue;
    const std::string a = absl::StrCat(ours, "/", f), b = absl::StrCat(theirs, "/", f);
    if (ReadAll(a) == ReadAll(b)) {
      out.identical.push_back(f);
      continue;
    }
    if (!absl::EndsWith(f, ".pt")) {
      out.problems.push_back(absl::StrCat(f, ": bytes differ"));
      continue;
    }
    absl::StatusOr<nlohmann::json> da = TorchFileDigest(a);
    absl::StatusOr<nlohmann::json> db = TorchFileDigest(b);
    if (!da.ok() || !db.ok()) {
      out.problems.push_back(
          absl::StrCat(f, ": unreadable: ", (da.ok() ? db : da).status().ToString()));
      continue;
    }
    const std::string diff = FirstDifference(*da, *db);
    if (diff.empty()) {
      out.tree_equal.push_back(f);
    } else {
      out.problems.push_back(absl::StrCat(f, ": value tree differs at ", diff));
    }
  }
  return out;
}

absl::Status MakeScaledZero3(const std::string& src, const std::string& dst, int64_t scale) {
  fs::create_directories(dst);
  std::vector<std::vector<int64_t>> group_numels;
  std::vector<std::string> optim_files;
  for (const auto& e : fs::directory_iterator(src)) {
    const std::string name = e.path().filename().string();
    if (absl::EndsWith(name, "_optim_states.pt")) optim_files.push_back(name);
    if (!absl::EndsWith(name, "_model_states.pt")) continue;
    UCP_ASSIGN_OR_RETURN(TorchFile file, TorchFile::OpenPath(e.path().string()));
    ValueArena& arena = *file.tree().arena;
    const Value* shapes = file.root().Get("param_shapes");
    if (shapes == nullptr)
      return absl::InvalidArgumentError(absl::StrCat(name, ": no param_shapes"));
    Value* new_shapes = arena.List();
    group_numels.clear();
    for (const Value* group : shapes->items()) {
      Value* g = arena.OrderedDict();
      group_numels.emplace_back();
      for (const auto& [k, v] : group->entries()) {
        const Value* dims = v->is(ValueKind::kObject) ? v->args()->items()[0] : v;
        std::vector<const Value*> scaled;
        int64_t numel = 1;
        for (size_t d = 0; d < dims->items().size(); ++d) {
          const int64_t x = dims->items()[d]->int_value() * (d == 0 ? scale : 1);
          scaled.push_back(arena.Int(x));
          numel *= x;
        }
        ValueArena::SetItem(g, k, arena.Tuple(std::move(scaled)));
        group_numels.back().push_back(numel);
      }
      ValueArena::Append(new_shapes, g);
    }
    Set(arena, file.root(), "param_shapes", new_shapes);
    UCP_RETURN_IF_ERROR(
        formats::torch::SaveTorchFile(absl::StrCat(dst, "/", name), file.root(), file.BytesFn()));
  }
  const int64_t world = static_cast<int64_t>(optim_files.size());
  for (const std::string& name : optim_files) {
    int rank = 0;
    if (!absl::SimpleAtoi(name.substr(13, name.find('_', 13) - 13), &rank)) {
      return absl::InvalidArgumentError(absl::StrCat("bad shard name ", name));
    }
    UCP_ASSIGN_OR_RETURN(TorchFile file, TorchFile::OpenPath(absl::StrCat(src, "/", name)));
    ValueArena& arena = *file.tree().arena;
    const Value* osd = file.root().Get("optimizer_state_dict");
    const Value* fp32 = osd->Get("fp32_flat_groups");
    Value* state = const_cast<Value*>(osd->Get("optimizer_state_dict")->Get("state"));
    Value* new_fp32 = arena.List();
    for (size_t s = 0; s < group_numels.size(); ++s) {
      int64_t flat = 0;
      for (int64_t n : group_numels[s]) flat += ucp::PerParamShard(n, world, 0).partition;
      const uint32_t seed = static_cast<uint32_t>(rank * 100 + s * 10);
      ValueArena::Append(new_fp32, NewFlatTensor(arena, fp32->items()[s]->tensor(), flat, seed));
      const Value* sub = state->entries()[s].second;
      Value* new_sub = arena.Dict();
      for (const auto& [k, v] : sub->entries()) {
        const Value* value = v;
        if (k->str() == "exp_avg") value = NewFlatTensor(arena, v->tensor(), flat, seed + 1);
        if (k->str() == "exp_avg_sq") value = NewFlatTensor(arena, v->tensor(), flat, seed + 2);
        ValueArena::SetItem(new_sub, k, value);
      }
      ValueArena::ReplaceValue(state, s, new_sub);
    }
    Set(arena, *osd, "fp32_flat_groups", new_fp32);
    UCP_RETURN_IF_ERROR(
        formats::torch::SaveTorchFile(absl::StrCat(dst, "/", name), file.root(), file.BytesFn()));
  }
  return absl::OkStatus();
}

// Drops excluded dict entries and storage details from a TorchFileDigest, in place.
void NormalizeDigest(nlohmann::json& j, const std::string& path,
                     const std::set<std::string>& excluded) {
  if (j.is_array()) {
    for (nlohmann::json& e : j) NormalizeDigest(e, path + "/*", excluded);
    return;
  }
  if (!j.is_object()) return;
  for (const char* kind : {"dict", "odict"}) {
    if (!j.contains(kind)) continue;
    nlohmann::json kept = nlohmann::json::array();
    for (nlohmann::json& kv : j[kind]) {
      const std::string key = kv[0].is_string() ? kv[0].get<std::string>() : "*";
      const std::string sub = path.empty() ? key : path + "/" + key;
      if (excluded.count(sub) > 0) continue;
      NormalizeDigest(kv[1], sub, excluded);
      kept.push_back(kv);
    }
    j[kind] = kept;
  }
  if (j.contains("tensor") && j["tensor"].is_object()) {
    j["tensor"].erase("storage");
    j["tensor"].erase("storage_crc32");
    j["tensor"].erase("storage_offset");
  }
  for (const char* kind : {"tuple", "set", "args"}) {
    if (j.contains(kind)) NormalizeDigest(j[kind], path, excluded);
  }
  if (j.contains("state")) NormalizeDigest(j["state"], path, excluded);
}

}  // namespace ucp::testing
