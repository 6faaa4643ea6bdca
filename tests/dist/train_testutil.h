// What the `ucp train` end-to-end tests share: running ucp-train (UCP_TRAIN_BIN) as a child with
// its metrics read back, the fixtures' configs, the TinyLM model config.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/convert_testutil.h"

namespace ucp::train_test {

namespace fs = std::filesystem;
using json = nlohmann::json;

inline std::string TrainBin() { return std::getenv("UCP_TRAIN_BIN"); }
inline std::string Fixture(const std::string& name) {
  return absl::StrCat(std::getenv("UCP_SOURCE_DIR"), "/fixtures/deepspeed/", name);
}

inline json ReadJson(const std::string& path) {
  std::ifstream f(path);
  return json::parse(f);
}

inline void WriteJson(const std::string& path, const json& j) { std::ofstream(path) << j.dump(1); }

struct TrainRun {
  int code = -1;
  std::string err;
  json metrics;
};

// Runs ucp-train with `args` (a shell-free argv), stderr captured.
inline TrainRun Train(const std::vector<std::string>& args, const std::string& dir) {
  const std::string err = dir + "/stderr.txt", metrics = dir + "/metrics.json";
  fs::remove(metrics);
  std::vector<std::string> quoted;
  for (const std::string& a : args) quoted.push_back("'" + a + "'");
  const std::string cmd = absl::StrCat("'", TrainBin(), "' ", absl::StrJoin(quoted, " "),
                                       " --metrics-json '", metrics, "' 2>'", err, "' >/dev/null");
  TrainRun r;
  const int st = std::system(cmd.c_str());
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream e(err);
  std::stringstream ss;
  ss << e.rdbuf();
  r.err = ss.str();
  if (fs::exists(metrics)) r.metrics = ReadJson(metrics);
  return r;
}

inline const json kTinyLm = {{"model_type", "tinylm"}, {"vocab_size", 61},
                             {"hidden_size", 24},      {"intermediate_size", 56},
                             {"num_hidden_layers", 2}, {"max_position_embeddings", 8}};

// The case's DeepSpeed config at dp (its micro-batch follows dp: global batch 8).
inline std::string WriteConfigs(const json& manifest, int dp, const std::string& dir,
                                int stage = -1) {
  json cfg = manifest["ds_config"];
  cfg["train_micro_batch_size_per_gpu"] = 8 / dp;
  if (stage >= 0) cfg["zero_optimization"]["stage"] = stage;
  WriteJson(dir + "/ds.json", cfg);
  WriteJson(dir + "/model.json", kTinyLm);
  return dir + "/ds.json";
}

inline std::vector<std::string> BaseArgs(int dp, const std::string& dir) {
  return {"--nproc",        std::to_string(dp),  "--config",  dir + "/ds.json",
          "--model-config", dir + "/model.json", "--no-fsync"};
}

// Every run's losses at `steps` equal the first run's within `tol`.
inline void ExpectSameLosses(const std::vector<json>& losses,
                             std::initializer_list<const char*> steps, double tol = 1e-5) {
  for (const char* step : steps) {
    for (size_t i = 1; i < losses.size(); ++i)
      EXPECT_NEAR(losses[i][step].get<double>(), losses[0][step].get<double>(), tol)
          << "step " << step;
  }
}

// Every file of the golden tag folder `golden` is in `ours` with equal value trees (but the
// `excluded` keys) and bitwise tensors, and `ours` has no other file.
inline void ExpectSameFiles(const std::string& ours, const std::string& golden,
                            const std::set<std::string>& excluded) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(golden)) names.push_back(e.path().filename());
  size_t ours_files = 0;
  for (const auto& e : fs::directory_iterator(ours)) ours_files += e.is_regular_file();
  EXPECT_EQ(ours_files, names.size());
  for (const std::string& n : names) {
    SCOPED_TRACE(n);
    absl::StatusOr<json> a = testing::TorchFileDigest(ours + "/" + n);
    absl::StatusOr<json> b = testing::TorchFileDigest(golden + "/" + n);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    testing::NormalizeDigest(*a, "", excluded);
    testing::NormalizeDigest(*b, "", excluded);
    EXPECT_EQ(testing::FirstDifference(*a, *b), "");
  }
}

}  // namespace ucp::train_test
