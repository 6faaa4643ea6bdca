// What every verb that writes (convert, reshard, export, zero-to-fp32) promises about the data it
// reads and the output it replaces, checked on the real `ucp` binary over a copy of a real
// DeepSpeed save folder (ucp/output_guard.h, converters/execute/run_plan.h):
//   * an output that is, contains or lies inside what the verb reads is refused, with or without
//     --force, before anything is written: the input's bytes are unchanged afterwards;
//   * --force replaces only ucp's own earlier output, and names what else it would delete;
//   * SIGINT / SIGTERM mid-write: exit 130 / 143, one line, nothing at the output nor its staging
//     name (the executor's test hook makes the signal land mid-write every time).
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/child_process.h"
#include "tests/integration/convert_testutil.h"
#include "ucp/manifest.h"
#include "ucp/staging_dir.h"

namespace ucp::testing {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every regular file under `dir` (relative path → size and CRC-32), and every folder.
std::map<std::string, std::pair<uint64_t, uint32_t>> TreeDigest(const std::string& dir) {
  std::map<std::string, std::pair<uint64_t, uint32_t>> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string rel = fs::relative(e.path(), dir).generic_string();
    if (e.is_directory()) {
      out[rel + "/"] = {0, 0};
      continue;
    }
    absl::StatusOr<ucp::ManifestEntry> h = ucp::HashFile(dir, rel);
    out[rel] =
        h.ok() ? std::make_pair(h->size, h->crc32) : std::make_pair(uint64_t{0}, uint32_t{0});
  }
  return out;
}

// A copy of a real save folder: <scratch>/CK/{latest, global_step5/, global_step5_universal/}.
class SaveFolder {
 public:
  explicit SaveFolder(const std::string& label) : scratch_(label) {
    fs::copy(FixtureCase("s2_fp32_dp2") + "/checkpoint", save(), fs::copy_options::recursive);
  }
  std::string root() const { return scratch_.path(); }
  std::string save() const { return scratch_.path() + "/CK"; }
  std::string tag() const { return save() + "/global_step5"; }
  std::string ucp() const { return save() + "/global_step5_universal"; }
  // Runs `ucp args...`; returns the exit code and fills stdout / stderr.
  int Run(const std::vector<std::string>& args, std::string* out, std::string* err,
          int pause_after = 0, int signal = 0) const {
    const std::string o = root() + "/stdout.txt", e = root() + "/stderr.txt",
                      ready = root() + "/paused";
    fs::remove(ready);
    const pid_t pid = SpawnUcp(args, o, e, pause_after, ready);
    if (pid <= 0) return -1000;
    if (signal != 0) {
      EXPECT_TRUE(WaitForFile(ready, 60)) << "never paused: " << ReadAll(e);
      ::kill(pid, signal);
    }
    const int code = WaitForExit(pid);
    *out = ReadAll(o);
    *err = ReadAll(e);
    return code;
  }

 private:
  ScratchDir scratch_;
};

enum class Verb { kConvert, kReshard, kReshardUcp, kExport, kZeroToFp32 };
enum class Where { kInputFolder, kSaveFolder, kParentOfSave, kInsideInput };

struct GuardCase {
  Verb verb;
  Where where;
  bool force;
};

std::string Name(const ::testing::TestParamInfo<GuardCase>& info) {
  const char* verbs[] = {"convert", "reshard", "reshard_ucp", "export", "zero_to_fp32"};
  const char* wheres[] = {"input_folder", "save_folder", "parent_of_save", "inside_input"};
  return absl::StrCat(verbs[static_cast<int>(info.param.verb)], "_",
                      wheres[static_cast<int>(info.param.where)], info.param.force ? "_force" : "");
}

// The command line for `verb` reading the save folder (or its tag / UCP folder) into `out`.
std::vector<std::string> Command(Verb verb, const SaveFolder& ck, const std::string& out) {
  switch (verb) {
    case Verb::kConvert: return {"convert", ck.tag(), out, "--no-fsync"};
    case Verb::kReshard: return {"reshard", ck.tag(), "--dp", "4", "--out", out, "--no-fsync"};
    case Verb::kReshardUcp: return {"reshard", ck.ucp(), "--dp", "3", "--out", out, "--no-fsync"};
    case Verb::kExport: return {"export", ck.save(), "--out", out, "--no-fsync"};
    case Verb::kZeroToFp32: return {"zero-to-fp32", ck.save(), out};
  }
  return {};
}

class OutputGuardTest : public ::testing::TestWithParam<GuardCase> {};

TEST_P(OutputGuardTest, OverlapIsRefusedAndTheInputIsUntouched) {
  const GuardCase& c = GetParam();
  SaveFolder ck(Name(::testing::TestParamInfo<GuardCase>(c, 0)));
  const std::string input = c.verb == Verb::kReshardUcp ? ck.ucp() : ck.tag();
  std::string out;
  switch (c.where) {
    case Where::kInputFolder: out = input; break;
    case Where::kSaveFolder: out = ck.save(); break;
    case Where::kParentOfSave: out = ck.root(); break;
    case Where::kInsideInput: out = input + "/inside"; break;
  }
  const auto before = TreeDigest(ck.save());
  std::vector<std::string> args = Command(c.verb, ck, out);
  if (c.force) args.push_back("--force");
  std::string stdout_text, stderr_text;
  EXPECT_EQ(ck.Run(args, &stdout_text, &stderr_text), 1) << stdout_text << stderr_text;
  EXPECT_EQ(stderr_text.rfind("error: output ", 0), 0u) << stderr_text;
  EXPECT_NE(stderr_text.find("refused with or without --force"), std::string::npos) << stderr_text;
  EXPECT_EQ(std::count(stderr_text.begin(), stderr_text.end(), '\n'), 1) << stderr_text;
  EXPECT_EQ(TreeDigest(ck.save()), before) << "the input changed";
  EXPECT_FALSE(fs::exists(ucp::StagingPathFor(out)));
}

std::vector<GuardCase> AllCases() {
  std::vector<GuardCase> out;
  for (Verb v :
       {Verb::kConvert, Verb::kReshard, Verb::kReshardUcp, Verb::kExport, Verb::kZeroToFp32}) {
    for (Where w :
         {Where::kInputFolder, Where::kSaveFolder, Where::kParentOfSave, Where::kInsideInput}) {
      for (bool force : {false, true}) out.push_back(GuardCase{v, w, force});
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Verbs, OutputGuardTest, ::testing::ValuesIn(AllCases()), Name);

TEST(OutputGuardTest, BesideTheTagFolderIsWhereOutputsGo) {
  SaveFolder ck("guard_beside");
  std::string out, err;
  // DeepSpeed's own layout: the UCP and exports inside the save folder, beside the tag.
  EXPECT_EQ(
      ck.Run({"convert", ck.save(), ck.save() + "/again_universal", "--no-fsync"}, &out, &err), 0)
      << err;
  EXPECT_EQ(ck.Run({"export", ck.save(), "--out", ck.save() + "/hf", "--no-fsync"}, &out, &err), 0)
      << err;
  EXPECT_TRUE(ucp::VerifyDirectory(ck.save() + "/hf").ok());
}

TEST(OutputGuardTest, ForceReplacesOnlyUcpsOwnOutput) {
  SaveFolder ck("guard_force");
  std::string out, err;
  // Not ucp's: a folder with a file of its own.
  const std::string other = ck.root() + "/other";
  fs::create_directories(other);
  std::ofstream(other + "/notes.txt") << "mine";
  EXPECT_EQ(ck.Run({"export", ck.save(), "--out", other, "--force", "--no-fsync"}, &out, &err), 1);
  EXPECT_NE(err.find("--force would delete " + other + "/notes.txt"), std::string::npos) << err;
  EXPECT_EQ(ReadAll(other + "/notes.txt"), "mine");
  // ucp's own earlier output is replaced; an empty folder is taken over without --force.
  const std::string resharded = ck.root() + "/resharded";
  fs::create_directories(resharded);
  ASSERT_EQ(
      ck.Run({"reshard", ck.save(), "--dp", "4", "--out", resharded, "--no-fsync"}, &out, &err), 0)
      << err;
  ASSERT_EQ(
      ck.Run({"reshard", ck.save(), "--dp", "3", "--out", resharded, "--no-fsync"}, &out, &err), 1);
  EXPECT_NE(err.find("already exists"), std::string::npos) << err;
  ASSERT_EQ(ck.Run({"reshard", ck.save(), "--dp", "3", "--out", resharded, "--force", "--no-fsync"},
                   &out, &err),
            0)
      << err;
  EXPECT_TRUE(fs::exists(resharded + "/global_step5/zero_pp_rank_2_mp_rank_00_optim_states.pt"));
  // ... until DeepSpeed has saved a new tag into it: then it is not ucp's alone.
  fs::create_directories(resharded + "/global_step10");
  std::ofstream(resharded + "/global_step10/mp_rank_00_model_states.pt") << "newer training";
  EXPECT_EQ(ck.Run({"reshard", ck.save(), "--dp", "4", "--out", resharded, "--force", "--no-fsync"},
                   &out, &err),
            1);
  EXPECT_NE(err.find("global_step10/mp_rank_00_model_states.pt"), std::string::npos) << err;
  EXPECT_EQ(ReadAll(resharded + "/global_step10/mp_rank_00_model_states.pt"), "newer training");
}

struct SignalCase {
  std::string name;
  std::vector<std::string> args;  // OUT stands for the output folder
  int pause_after;
};

class SignalTest : public ::testing::TestWithParam<std::pair<SignalCase, int>> {};

TEST_P(SignalTest, InterruptedRunLeavesNothingAndSaysSo) {
  const auto& [c, sig] = GetParam();
  SaveFolder ck(absl::StrCat("signal_", c.name, "_", sig));
  const std::string out = ck.root() + "/out";
  std::vector<std::string> args;
  for (const std::string& a : c.args) {
    args.push_back(a == "OUT" ? out : a == "CK" ? ck.save() : a == "TAG" ? ck.tag() : a);
  }
  std::string stdout_text, stderr_text;
  EXPECT_EQ(ck.Run(args, &stdout_text, &stderr_text, c.pause_after, sig), 128 + sig) << stderr_text;
  EXPECT_EQ(stderr_text.rfind("error: interrupted; nothing was written at " + out, 0), 0u)
      << stderr_text;
  EXPECT_NE(stderr_text.find(sig == SIGINT ? "(SIGINT)" : "(SIGTERM)"), std::string::npos)
      << stderr_text;
  EXPECT_EQ(std::count(stderr_text.begin(), stderr_text.end(), '\n'), 1) << stderr_text;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(ucp::StagingPathFor(out)));
}

std::vector<std::pair<SignalCase, int>> SignalCases() {
  const std::vector<SignalCase> verbs = {
      {"convert", {"convert", "TAG", "OUT", "--threads", "1", "--no-fsync"}, 2},
      {"reshard",
       {"reshard", "TAG", "--dp", "4", "--out", "OUT", "--threads", "1", "--no-fsync"},
       2},
      {"export", {"export", "CK", "--out", "OUT", "--threads", "1", "--no-fsync"}, 2},
      {"export_hdf5", {"export", "CK", "--out", "OUT", "--format", "hdf5", "--no-fsync"}, 1},
      {"zero_to_fp32", {"zero-to-fp32", "CK", "OUT"}, 2},
  };
  std::vector<std::pair<SignalCase, int>> out;
  for (const SignalCase& v : verbs) {
    for (int sig : {SIGINT, SIGTERM}) out.emplace_back(v, sig);
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Verbs, SignalTest, ::testing::ValuesIn(SignalCases()),
                         [](const ::testing::TestParamInfo<std::pair<SignalCase, int>>& p) {
                           return absl::StrCat(p.param.first.name,
                                               p.param.second == SIGINT ? "_sigint" : "_sigterm");
                         });

}  // namespace
}  // namespace ucp::testing
