#include "converters/launch/launcher.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "formats/base/scratch_dir_testutil.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::converters::launch {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

bool WaitForFiles(const std::vector<std::string>& paths, double seconds) {
  const Clock::time_point start = Clock::now();
  while (SecondsSince(start) < seconds) {
    bool all = true;
    for (const std::string& p : paths) all = all && !ReadFile(p).empty();
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Alive: exists and is not a zombie (an orphan's zombie waits for whoever reaps at pid 1).
bool IsAlive(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  const std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  const size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'Z';
}

// Waits up to `seconds` for every pid written in the files to be gone.
bool AllGone(const std::vector<std::string>& pid_files, double seconds) {
  const Clock::time_point start = Clock::now();
  do {
    bool any = false;
    for (const std::string& file : pid_files) {
      const int pid = std::atoi(ReadFile(file).c_str());
      any = any || (pid > 0 && IsAlive(pid));
    }
    if (!any) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (SecondsSince(start) < seconds);
  return false;
}

LaunchOptions Shell(int nproc, const std::string& script, std::ostream* log) {
  LaunchOptions options;
  options.nproc = nproc;
  options.argv = {"/bin/sh", "-c", script};
  options.grace_seconds = 0.5;
  options.log = log;
  options.name = "ucp train";
  return options;
}

class LaunchTest : public ::testing::Test {
 protected:
  // `dir` quoted for the scripts.
  std::string Dir() const { return "'" + dir_.path().string() + "'"; }
  std::string File(const std::string& name) const { return dir_.File(name); }
  std::vector<std::string> Files(const std::string& prefix, int n) const {
    std::vector<std::string> files;
    for (int r = 0; r < n; ++r) files.push_back(File(absl::StrCat(prefix, r)));
    return files;
  }

  testutil::ScratchDir dir_;
  std::ostringstream log_;
};

TEST_F(LaunchTest, AllSucceedWithTheirOwnRankEnvironment) {
  ::setenv("RANK", "7", 1);  // stale outer values must not leak into the ranks
  ::setenv("SLURM_PROCID", "5", 1);
  ::setenv("UCP_DIST_PORT", "1", 1);
  ::setenv("UCP_LAUNCH_TEST_INHERITED", "yes", 1);
  const std::string script =
      "echo \"$RANK $LOCAL_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE $MASTER_ADDR "
      "$MASTER_PORT $UCP_LAUNCHED ${SLURM_PROCID:-none} ${UCP_DIST_PORT:-none} "
      "$UCP_LAUNCH_TEST_INHERITED\" > " +
      Dir() + "/env_$RANK";
  auto result = LaunchLocal(Shell(3, script, &log_));
  for (const char* name : {"RANK", "SLURM_PROCID", "UCP_DIST_PORT", "UCP_LAUNCH_TEST_INHERITED"})
    ::unsetenv(name);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 0);
  EXPECT_EQ(result->first_failed_rank, -1);
  EXPECT_EQ(result->message, "");
  std::string port;
  for (int r = 0; r < 3; ++r) {
    std::istringstream fields(ReadFile(File(absl::StrCat("env_", r))));
    std::string rank, local, world, local_world, addr, this_port, launched, slurm, dist_port,
        inherited;
    fields >> rank >> local >> world >> local_world >> addr >> this_port >> launched >> slurm >>
        dist_port >> inherited;
    EXPECT_EQ(slurm, "none");
    EXPECT_EQ(dist_port, "none");
    EXPECT_EQ(rank, absl::StrCat(r));
    EXPECT_EQ(local, absl::StrCat(r));
    EXPECT_EQ(world, "3");
    EXPECT_EQ(local_world, "3");
    EXPECT_EQ(addr, "127.0.0.1");
    EXPECT_EQ(launched, "1");
    EXPECT_EQ(inherited, "yes");
    const int p = std::atoi(this_port.c_str());
    EXPECT_GT(p, 0);
    EXPECT_LE(p, 65535);
    if (r == 0) port = this_port;
    EXPECT_EQ(this_port, port) << "every rank sees the same MASTER_PORT";
  }
}

TEST_F(LaunchTest, GivenPortAndAddressArePassedOn) {
  LaunchOptions options =
      Shell(2, "echo \"$MASTER_ADDR:$MASTER_PORT\" > " + Dir() + "/env_$RANK", &log_);
  options.master_addr = "10.1.2.3";
  options.master_port = 29511;
  auto result = LaunchLocal(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 0);
  EXPECT_EQ(ReadFile(File("env_0")), "10.1.2.3:29511");
  EXPECT_EQ(ReadFile(File("env_1")), "10.1.2.3:29511");
}

TEST_F(LaunchTest, OneRankFailsTheOthersAreStoppedAndNothingIsLeft) {
  // Rank 1 fails once the others run; they would sleep (a shell and its child sleep) for ever.
  const std::string d = Dir();
  const std::string script = "echo $$ > " + d + "/pid_$RANK; if [ \"$RANK\" = 1 ]; then " +
                             "while [ ! -s " + d + "/kid_0 ] || [ ! -s " + d +
                             "/kid_2 ]; do sleep 0.02; done; exit 3; fi; sleep 1000 & echo $! > " +
                             d + "/kid_$RANK; wait";
  LaunchOptions options = Shell(3, script, &log_);
  options.grace_seconds = 1;
  const Clock::time_point start = Clock::now();
  auto result = LaunchLocal(options);
  const double elapsed = SecondsSince(start);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 1);
  EXPECT_EQ(result->first_failed_rank, 1);
  EXPECT_EQ(result->message, "rank 1 exited with code 3");
  EXPECT_LT(elapsed, options.grace_seconds + 6);
  EXPECT_THAT(log_.str(), HasSubstr("ucp train: rank 1 exited with code 3"));
  EXPECT_THAT(log_.str(), HasSubstr("sending SIGTERM to rank(s) 0, 2"));
  // The ranks themselves are reaped; their children went with their process groups.
  for (const std::string& file : Files("pid_", 3)) {
    const int pid = std::atoi(ReadFile(file).c_str());
    ASSERT_GT(pid, 0) << file;
    EXPECT_NE(::kill(pid, 0), 0) << "rank process " << pid << " left behind";
  }
  EXPECT_TRUE(AllGone({File("kid_0"), File("kid_2")}, 3)) << "a rank's child outlived it";
}

TEST_F(LaunchTest, RankKilledBySignalIsNamed) {
  auto result = LaunchLocal(Shell(2, "if [ \"$RANK\" = 0 ]; then kill -9 $$; fi; exit 0", &log_));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 1);
  EXPECT_EQ(result->first_failed_rank, 0);
  EXPECT_EQ(result->message, "rank 0 was killed by signal 9 (SIGKILL)");
  EXPECT_THAT(log_.str(), HasSubstr("ucp train: rank 0 was killed by signal 9 (SIGKILL)"));
}

TEST_F(LaunchTest, RankIgnoringSigtermGetsSigkill) {
  // SIG_IGN is inherited through exec: the loop's sleeps ignore SIGTERM too.
  const std::string d = Dir();
  const std::string script = "if [ \"$RANK\" = 0 ]; then while [ ! -s " + d +
                             "/pid_1 ]; do sleep 0.02; done; exit 1; fi; trap '' TERM; echo $$ > " +
                             d + "/pid_1; while :; do sleep 0.1; done";
  LaunchOptions options = Shell(2, script, &log_);
  options.grace_seconds = 0.2;
  const Clock::time_point start = Clock::now();
  auto result = LaunchLocal(options);
  const double elapsed = SecondsSince(start);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 1);
  EXPECT_EQ(result->message, "rank 0 exited with code 1");
  EXPECT_GE(elapsed, 5);  // SIGKILL comes 5 s after SIGTERM
  EXPECT_LT(elapsed, options.grace_seconds + 8);
  EXPECT_THAT(log_.str(), HasSubstr("sending SIGKILL to rank(s) 1"));
  EXPECT_THAT(log_.str(), HasSubstr("rank 1 was killed by signal 9 (SIGKILL)"));
  EXPECT_NE(::kill(std::atoi(ReadFile(File("pid_1")).c_str()), 0), 0);
}

// Runs LaunchLocal in a forked process (the launcher), so that signals to it cannot hit the test;
// returns its pid. The child writes the message to `message_file` and exits with the exit code.
pid_t ForkLauncher(const LaunchOptions& options, const std::string& message_file) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    auto result = LaunchLocal(options);
    std::ofstream(message_file) << (result.ok() ? result->message : result.status().ToString());
    ::_exit(result.ok() ? result->exit_code : 99);
  }
  return pid;
}

// waitpid with a deadline; SIGKILLs the process when it is late. Returns the wait status or -1.
int WaitWithTimeout(pid_t pid, double seconds) {
  const Clock::time_point start = Clock::now();
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (SecondsSince(start) > seconds) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return status;
}

TEST_F(LaunchTest, SigintToTheLauncherIsForwardedAndGives130) {
  const std::string d = Dir();
  const std::string script = "trap 'echo int > " + d + "/int_$RANK; exit 0' INT; echo $$ > " + d +
                             "/pid_$RANK; while :; do sleep 0.1; done";
  LaunchOptions options = Shell(2, script, nullptr);
  options.grace_seconds = 3;
  const pid_t launcher = ForkLauncher(options, File("message"));
  ASSERT_GT(launcher, 0);
  ASSERT_TRUE(WaitForFiles(Files("pid_", 2), 10)) << "the ranks did not start";
  ASSERT_EQ(::kill(launcher, SIGINT), 0);
  const int status = WaitWithTimeout(launcher, 10);
  ASSERT_NE(status, -1) << "the launcher did not end";
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_EQ(ReadFile(File("message")), "interrupted by SIGINT");
  EXPECT_EQ(ReadFile(File("int_0")), "int") << "rank 0 did not get the SIGINT";
  EXPECT_EQ(ReadFile(File("int_1")), "int") << "rank 1 did not get the SIGINT";
  EXPECT_TRUE(AllGone(Files("pid_", 2), 3));
}

TEST_F(LaunchTest, SigtermToTheLauncherGives143) {
  LaunchOptions options = Shell(2, "echo $$ > " + Dir() + "/pid_$RANK; exec sleep 1000", nullptr);
  const pid_t launcher = ForkLauncher(options, File("message"));
  ASSERT_GT(launcher, 0);
  ASSERT_TRUE(WaitForFiles(Files("pid_", 2), 10)) << "the ranks did not start";
  ASSERT_EQ(::kill(launcher, SIGTERM), 0);
  const int status = WaitWithTimeout(launcher, 10);
  ASSERT_NE(status, -1) << "the launcher did not end";
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 143);
  EXPECT_THAT(ReadFile(File("message")),
              HasSubstr("interrupted by SIGTERM; rank "));  // the rank that ended first
  EXPECT_THAT(ReadFile(File("message")), HasSubstr("was killed by signal 15 (SIGTERM)"));
  EXPECT_TRUE(AllGone(Files("pid_", 2), 3));
}

TEST_F(LaunchTest, SecondSigintSkipsTheGracePeriod) {
  // The ranks ignore SIGINT; only the SIGTERM that the second SIGINT brings at once ends them.
  const std::string script =
      "trap '' INT; echo $$ > " + Dir() + "/pid_$RANK; while :; do sleep 0.1; done";
  LaunchOptions options = Shell(2, script, nullptr);
  options.grace_seconds = 60;
  const pid_t launcher = ForkLauncher(options, File("message"));
  ASSERT_GT(launcher, 0);
  ASSERT_TRUE(WaitForFiles(Files("pid_", 2), 10)) << "the ranks did not start";
  const Clock::time_point start = Clock::now();
  ASSERT_EQ(::kill(launcher, SIGINT), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_EQ(::kill(launcher, SIGINT), 0);
  const int status = WaitWithTimeout(launcher, 10);
  ASSERT_NE(status, -1) << "the launcher did not end";
  EXPECT_LT(SecondsSince(start), 5);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_THAT(ReadFile(File("message")), HasSubstr("was killed by signal 15 (SIGTERM)"));
  EXPECT_TRUE(AllGone(Files("pid_", 2), 3));
}

TEST_F(LaunchTest, RanksDoNotOutliveAKilledLauncher) {
  LaunchOptions options = Shell(2, "echo $$ > " + Dir() + "/pid_$RANK; exec sleep 1000", nullptr);
  const pid_t launcher = ForkLauncher(options, File("message"));
  ASSERT_GT(launcher, 0);
  ASSERT_TRUE(WaitForFiles(Files("pid_", 2), 10)) << "the ranks did not start";
  ::kill(launcher, SIGKILL);
  ASSERT_NE(WaitWithTimeout(launcher, 5), -1);
  EXPECT_TRUE(AllGone(Files("pid_", 2), 5)) << "PR_SET_PDEATHSIG did not end the ranks";
}

TEST_F(LaunchTest, BadRequests) {
  LaunchOptions options = Shell(0, "exit 0", &log_);
  EXPECT_EQ(LaunchLocal(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.nproc = 1;
  options.argv.clear();
  EXPECT_EQ(LaunchLocal(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.argv = {File("no_such_program")};
  auto missing = LaunchLocal(options);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("no_such_program"));
  options = Shell(1, "exit 0", &log_);
  options.master_port = 70000;
  EXPECT_EQ(LaunchLocal(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(LaunchTest, ExecFailureIsAnError) {
  // Executable bits but no format execve knows (no #! line): ENOEXEC from the child.
  const std::string path = File("not_a_program");
  std::ofstream(path) << "\x7f garbage\n";
  ASSERT_EQ(::chmod(path.c_str(), 0755), 0);
  LaunchOptions options = Shell(2, "", &log_);
  options.argv = {path};
  auto result = LaunchLocal(options);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("cannot execute " + path));
}

TEST(FreeLocalPortTest, ReturnsABindablePort) {
  const int port = FreeLocalPort();
  ASSERT_GT(port, 0);
  ASSERT_LE(port, 65535);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  struct sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(::bind(fd, reinterpret_cast<struct sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(::listen(fd, 1), 0);
  ::close(fd);
}

}  // namespace
}  // namespace ucp::converters::launch
