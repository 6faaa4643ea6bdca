// Test helpers: paths of the DeepSpeed fixtures (fixtures/deepspeed, see its README.md) and scratch
// copies of them for the hostile tests.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "formats/base/scratch_dir_testutil.h"
#include "gtest/gtest.h"

namespace ucp::formats::deepspeed::testing {

// fixtures/deepspeed/<case>; UCP_SOURCE_DIR is set by ucp_test.
inline std::string FixtureCase(const std::string& name) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return absl::StrCat(root != nullptr ? root : ".", "/fixtures/deepspeed/", name);
}

// A fresh per-test scratch folder (formats/base/scratch_dir_testutil.h), removed when the object
// dies, that can hold copies of fixture tag folders.
class ScratchDir : public ucp::testutil::ScratchDir {
 public:
  // Copies fixtures/deepspeed/<name>/<sub> (a tag folder) to <scratch>/<tag> and returns that path.
  std::filesystem::path CopyTag(const std::string& name,
                                const std::string& sub = "checkpoint/global_step5") {
    const std::filesystem::path from = std::filesystem::path(FixtureCase(name)) / sub;
    const std::filesystem::path to = path() / from.filename();
    std::filesystem::copy(from, to, std::filesystem::copy_options::recursive);
    return to;
  }
};

}  // namespace ucp::formats::deepspeed::testing
