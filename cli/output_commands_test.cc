// The verbs that write, as the CLI reports them: a progress line (when stderr is a terminal)
// whose last draw shows the same total as the final "wrote ..." line, human units in that line,
// and export's notes (everything fits one shard: no index) and warnings (a tensor larger than
// --max-shard-size).
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/commands/convert_command.h"
#include "cli/commands/export_command.h"
#include "cli/commands/reshard_command.h"
#include "formats/base/scratch_dir_testutil.h"
#include "gtest/gtest.h"

namespace ucp::cli {
namespace {

namespace fs = std::filesystem;

std::string Checkpoint(const std::string& name) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return std::string(root ? root : ".") + "/fixtures/deepspeed/" + name + "/checkpoint";
}

class OutputCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = scratch_.path().string(); }
  testutil::ScratchDir scratch_;
  std::string dir_;
};

// The last progress draw ("\r  <done> / <total>  <percent>%  ...  (<files>/<files> files)").
std::string LastDraw(const std::string& err) {
  const size_t at = err.rfind('\r');
  if (at == std::string::npos) return "";
  return err.substr(at + 1, err.find('\n', at) - at - 1);
}

// "<total> / <total>  100%" and "(<n>/<n> files)" in the last draw, with `total` as the final line
// prints it.
void ExpectFinished(const std::string& err, const std::string& total,
                    const std::string& final_line) {
  const std::string last = LastDraw(err);
  EXPECT_EQ(last.rfind(absl::StrCat("  ", total, " / ", total, "  100%"), 0), 0u) << last;
  EXPECT_NE(final_line.find(total), std::string::npos) << final_line << " vs " << last;
  const size_t open = last.rfind('(');
  ASSERT_NE(open, std::string::npos) << last;
  const std::vector<std::string> files =
      absl::StrSplit(last.substr(open + 1), absl::ByAnyChar("/ "));
  ASSERT_GE(files.size(), 2u) << last;
  EXPECT_EQ(files[0], files[1]) << last;
}

// The human size in "..., 12 files, 1.2 MiB in ..." or "... tensors, 1.2 MiB from ...".
std::string SizeIn(const std::string& line, const std::string& before, const std::string& after) {
  const size_t b = line.find(before);
  const size_t e = line.find(after, b == std::string::npos ? 0 : b);
  if (b == std::string::npos || e == std::string::npos) return "?";
  return line.substr(b + before.size(), e - b - before.size());
}

TEST_F(OutputCommandsTest, ProgressEndsAtTheTotalOfTheFinalLine) {
  ConvertCommandOptions c;
  c.input = Checkpoint("s2_fp32_dp2") + "/global_step5";
  c.output = dir_ + "/ucp";
  c.no_fsync = true;
  c.progress = true;
  std::ostringstream out, err;
  ASSERT_EQ(RunConvert(c, out, err), 0) << err.str();
  ExpectFinished(err.str(), SizeIn(out.str(), " files, ", " in "), out.str());

  ReshardCommandOptions r;
  r.input = Checkpoint("s2_fp32_dp2");
  r.output = dir_ + "/dp3";
  r.dp = 3;
  r.no_fsync = true;
  r.progress = true;
  std::ostringstream rout, rerr;
  ASSERT_EQ(RunReshard(r, rout, rerr), 0) << rerr.str();
  EXPECT_EQ(rout.str().find(" bytes"), std::string::npos) << rout.str();  // human units
  ExpectFinished(rerr.str(), SizeIn(rout.str(), " files, ", " in "), rout.str());

  for (const char* format : {"safetensors", "hdf5"}) {
    ExportCommandOptions e;
    e.input = Checkpoint("s2_fp32_dp2");
    e.output = dir_ + "/export_" + format;
    e.format = format;
    e.no_fsync = true;
    e.progress = true;
    std::ostringstream eout, eerr;
    ASSERT_EQ(RunExport(e, eout, eerr), 0) << eerr.str();
    ExpectFinished(eerr.str(), SizeIn(eout.str(), " tensors, ", " from "), eout.str());
  }
  // Not a terminal: no progress at all.
  ExportCommandOptions quiet;
  quiet.input = Checkpoint("s2_fp32_dp2");
  quiet.output = dir_ + "/quiet";
  quiet.zero_to_fp32 = true;
  std::ostringstream qout, qerr;
  ASSERT_EQ(RunExport(quiet, qout, qerr), 0) << qerr.str();
  EXPECT_EQ(qerr.str(), "");
}

TEST_F(OutputCommandsTest, ExportSaysWhenOneShardFitsAndWarnsOfOversizedTensors) {
  ExportCommandOptions e;
  e.input = Checkpoint("s2_fp32_dp2");
  e.output = dir_ + "/one";
  e.max_shard_size = "1GB";
  e.no_fsync = true;
  std::ostringstream out, err;
  ASSERT_EQ(RunExport(e, out, err), 0) << err.str();
  EXPECT_EQ(err.str(),
            "note: everything fits one shard of 953.7 MiB: one file, no index written\n");
  EXPECT_TRUE(fs::exists(e.output + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(e.output + "/model.safetensors.index.json"));

  e.output = dir_ + "/many";
  e.max_shard_size = "1KB";
  std::ostringstream out2, err2;
  ASSERT_EQ(RunExport(e, out2, err2), 0) << err2.str();
  EXPECT_NE(err2.str().find("warning: tensor embed.weight ("), std::string::npos) << err2.str();
  EXPECT_NE(err2.str().find(") exceeds --max-shard-size (1000 B): it has a shard of its own\n"),
            std::string::npos)
      << err2.str();
  EXPECT_EQ(err2.str().find("note:"), std::string::npos) << err2.str();
  EXPECT_TRUE(fs::exists(e.output + "/model.safetensors.index.json"));
}

}  // namespace
}  // namespace ucp::cli
