// ScratchDir: the one per-test temporary folder of every C++ test (test code only: it uses gtest).
// Each is a fresh mkdtemp folder under gtest's TempDir() (TEST_TMPDIR, else /tmp) named after the
// running test, so parallel ctest jobs, reruns and other checkouts on the same machine never share
// a path, and leftovers say which test made them. The folder and everything in it is removed when
// the object goes, also when an ASSERT returned early.
#pragma once

#include <stdlib.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include "gtest/gtest.h"

namespace ucp::testutil {

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& label = "") : path_(Make(label)) {}
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // path()/name as a string (not created).
  std::string File(const std::string& name) const { return (path_ / name).string(); }

  // Creates "<TempDir>/ucp_<Suite>.<Test>[_<label>]_XXXXXX" and returns it; the caller removes it.
  // Aborts when it cannot: a test writing into a shared or missing folder passes or fails by
  // accident.
  static std::filesystem::path Make(const std::string& label) {
    std::string name = "ucp_";
    if (const auto* info = ::testing::UnitTest::GetInstance()->current_test_info()) {
      name += std::string(info->test_suite_name()) + "." + info->name();
    }
    if (!label.empty()) name += "_" + label;
    for (char& c : name) {
      const bool keep = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_';
      c = keep ? c : '_';  // parameterized names hold '/'
    }
    name.resize(std::min<size_t>(name.size(), 120));  // under NAME_MAX with the suffix
    std::string pattern =
        (std::filesystem::path(::testing::TempDir()) / (name + "_XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::fprintf(stderr, "ScratchDir: cannot create %s\n", pattern.c_str());
      std::abort();
    }
    return pattern;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace ucp::testutil
