// Test helpers: paths of the DeepSpeed fixtures (fixtures/deepspeed, see its README.md) and scratch
// copies of them for the hostile tests.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace ucp::converters::deepspeed::testing {

// fixtures/deepspeed/<case>; UCP_SOURCE_DIR is set by ucp_test.
inline std::string FixtureCase(const std::string& name) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return absl::StrCat(root != nullptr ? root : ".", "/fixtures/deepspeed/", name);
}

// A fresh scratch folder, removed when the object dies.
class ScratchDir {
 public:
  ScratchDir() {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = absl::StrCat("ucp_dsindex_", info->test_suite_name(), "_", info->name(), "_", ::getpid());
    for (char& c : name) c = c == '/' ? '_' : c;
    path_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

  // Copies fixtures/deepspeed/<name>/<sub> (a tag folder) to <scratch>/<tag> and returns that path.
  std::filesystem::path CopyTag(const std::string& name, const std::string& sub = "checkpoint/global_step5") {
    const std::filesystem::path from = std::filesystem::path(FixtureCase(name)) / sub;
    const std::filesystem::path to = path_ / from.filename();
    std::filesystem::copy(from, to, std::filesystem::copy_options::recursive);
    return to;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace ucp::converters::deepspeed::testing
