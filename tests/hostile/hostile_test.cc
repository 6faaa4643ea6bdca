// Crafted bad files (fixtures/hostile/, written by fixtures/generate/make_hostile.py). For every
// entry of fixtures/hostile/MANIFEST.json the reader of its format must fail with exactly the
// listed absl status code, at the listed stage (open, read or verify: see read_all.h), with a
// message that names the file and contains the listed fragment, and without any single
// allocation larger than kMaxAllocationBytes (every file is under 128 KB, so a bigger allocation
// can only come from a size the file claims). The folder must hold exactly the listed files.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "formats/base/byte_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/hostile/allocation_tracker.h"
#include "tests/hostile/read_all.h"

namespace ucp::testing {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr size_t kMaxAllocationBytes = size_t{16} << 20;

std::filesystem::path HostileDir() {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return std::filesystem::path(root != nullptr ? root : ".") / "fixtures" / "hostile";
}

Json LoadManifest() {
  std::ifstream in(HostileDir() / "MANIFEST.json");
  EXPECT_TRUE(in.good()) << "cannot read " << HostileDir() / "MANIFEST.json";
  return Json::parse(in, nullptr, /*allow_exceptions=*/false);
}

Outcome ReadAll(const std::string& format, const std::string& path) {
  if (format == "hdf5") return ReadAllHdf5(path);
  absl::StatusOr<std::shared_ptr<ByteSource>> source = OpenFileSource(path);
  if (!source.ok()) {
    Outcome failed;
    failed.stage = Stage::kOpen;
    failed.status = source.status();
    return failed;
  }
  if (format == "torch") return ReadAllTorch(*std::move(source));
  if (format == "safetensors") return ReadAllSafetensors(*std::move(source));
  ADD_FAILURE() << "unknown format " << format;
  return Outcome{};
}

// Checks every manifest entry of `format`; returns how many there were.
int CheckFormat(const std::string& format) {
  const Json manifest = LoadManifest();
  int checked = 0;
  for (const Json& entry : manifest.value("files", Json::array())) {
    if (entry.value("format", "") != format) continue;
    const std::string file = entry.at("file");
    SCOPED_TRACE(file + " (" + entry.value("tests", "") + ")");
    const std::filesystem::path path = HostileDir() / file;
    if (!std::filesystem::exists(path)) {
      ADD_FAILURE() << path << " is missing: rerun fixtures/generate/make_hostile.py";
      continue;
    }
    EXPECT_EQ(std::filesystem::file_size(path), entry.at("bytes").get<uint64_t>())
        << "stale file: rerun fixtures/generate/make_hostile.py";

    ResetLargestAllocation();
    const Outcome outcome = ReadAll(format, path.string());
    const size_t largest = LargestAllocation();

    EXPECT_EQ(StageName(outcome.stage), entry.at("stage").get<std::string>()) << outcome.status;
    EXPECT_EQ(absl::StatusCodeToString(outcome.status.code()), entry.at("code").get<std::string>())
        << outcome.status;
    const std::string message(outcome.status.message());
    EXPECT_THAT(message, HasSubstr(entry.at("message").get<std::string>()));
    EXPECT_THAT(message, HasSubstr(file)) << "the message must name the file";
    EXPECT_LE(largest, kMaxAllocationBytes) << "an allocation sized from the file's claims";
    if (entry.at("stage") == "verify") {
      EXPECT_GT(outcome.tensors, 0) << "a verify case must open and read before the CRC check";
    }
    ++checked;
  }
  return checked;
}

TEST(HostileTest, TorchFilesFailAsListed) { EXPECT_GT(CheckFormat("torch"), 0); }

TEST(HostileTest, SafetensorsFilesFailAsListed) { EXPECT_GT(CheckFormat("safetensors"), 0); }

TEST(HostileTest, Hdf5FilesFailAsListed) { EXPECT_GT(CheckFormat("hdf5"), 0); }

TEST(HostileTest, ManifestListsExactlyTheFilesInTheFolder) {
  const Json manifest = LoadManifest();
  ASSERT_TRUE(manifest.is_object()) << "MANIFEST.json is not a JSON object";
  const std::set<std::string> formats = {"torch", "safetensors", "hdf5"};
  const std::set<std::string> stages = {"open", "read", "verify"};
  std::set<std::string> listed;
  for (const Json& entry : manifest.at("files")) {
    const std::string file = entry.at("file");
    EXPECT_TRUE(listed.insert(file).second) << file << " is listed twice";
    EXPECT_TRUE(formats.contains(entry.at("format").get<std::string>())) << file;
    EXPECT_TRUE(stages.contains(entry.at("stage").get<std::string>())) << file;
    EXPECT_FALSE(entry.at("message").get<std::string>().empty()) << file;
    EXPECT_FALSE(entry.at("tests").get<std::string>().empty()) << file;
  }
  std::set<std::string> present;
  for (const auto& dirent : std::filesystem::directory_iterator(HostileDir())) {
    const std::string name = dirent.path().filename().string();
    if (name != "MANIFEST.json") present.insert(name);
  }
  EXPECT_EQ(present, listed) << "every file in fixtures/hostile/ must have a MANIFEST.json entry";
}

}  // namespace
}  // namespace ucp::testing
