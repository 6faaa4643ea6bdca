#include "ucp/manifest.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "formats/base/crc32.h"
#include "formats/base/scratch_dir_testutil.h"
#include "gtest/gtest.h"
#include "ucp/ucp_layout.h"

namespace ucp {
namespace {

namespace fs = std::filesystem;

class ScratchDir {
 public:
  ScratchDir() : path_(testutil::ScratchDir::Make("")) {}
  ~ScratchDir() { fs::remove_all(path_); }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

void Write(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(ManifestTest, JsonRoundTripSortsEntries) {
  Manifest m;
  m.files = {{"zero/b/fp32.pt", 930, 0xdeadbeef}, {"mp_rank_00_model_states.pt", 7, 1}};
  const std::string json = ManifestToJson(m);
  absl::StatusOr<Manifest> back = ParseManifest(json);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->files.size(), 2u);
  EXPECT_EQ(back->files[0].path, "mp_rank_00_model_states.pt");
  EXPECT_EQ(back->files[1], (ManifestEntry{"zero/b/fp32.pt", 930, 0xdeadbeef}));
  EXPECT_NE(json.find("\"crc32\":\"deadbeef\""), std::string::npos) << json;
}

TEST(ManifestTest, HostileManifestsAreDataLoss) {
  for (
      const char* bad :
      {"", "[]", R"({"format":"x","version":1,"files":[]})",
       R"({"format":"ucp-manifest","version":2,"files":[]})",
       R"({"format":"ucp-manifest","version":1,"files":[{"path":"../x","size":1,"crc32":"00000000"}]})",
       R"({"format":"ucp-manifest","version":1,"files":[{"path":"a","size":1,"crc32":"zz"}]})",
       R"({"format":"ucp-manifest","version":1,"files":[{"path":"a","size":1,"crc32":"00000000"},
                                {"path":"a","size":1,"crc32":"00000000"}]})"}) {
    EXPECT_EQ(ParseManifest(bad).status().code(), absl::StatusCode::kDataLoss) << bad;
  }
}

TEST(ManifestTest, VerifyDirectoryFindsChangedMissingAndExtraFiles) {
  ScratchDir dir;
  Write(dir.path() + "/a.pt", "hello");
  Write(dir.path() + "/zero/p/fp32.pt", "world!");
  Manifest m;
  for (const std::string rel : {"a.pt", "zero/p/fp32.pt"}) {
    absl::StatusOr<ManifestEntry> e = HashFile(dir.path(), rel);
    ASSERT_TRUE(e.ok());
    m.files.push_back(*e);
  }
  EXPECT_EQ(m.files[0].crc32, Crc32("hello"));
  Write(dir.path() + "/" + std::string(kManifestFile), ManifestToJson(m));
  EXPECT_TRUE(VerifyDirectory(dir.path()).ok());

  Write(dir.path() + "/zero/p/fp32.pt", "World!");
  absl::Status s = VerifyDirectory(dir.path());
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("zero/p/fp32.pt"), std::string::npos) << s;
  Write(dir.path() + "/zero/p/fp32.pt", "world!");
  Write(dir.path() + "/extra.pt", "x");
  EXPECT_NE(VerifyDirectory(dir.path()).message().find("extra.pt"), std::string::npos);
  fs::remove(dir.path() + "/extra.pt");
  fs::remove(dir.path() + "/a.pt");
  EXPECT_EQ(VerifyDirectory(dir.path()).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace ucp
