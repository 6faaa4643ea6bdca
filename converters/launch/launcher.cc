#include "converters/launch/launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "converters/launch/rank_env.h"
#include "formats/base/status.h"

extern char** environ;

namespace ucp::converters::launch {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP};
constexpr int kNumForwarded = 3;
constexpr double kKillAfterTermSeconds = 5;
// How long SIGKILLed ranks get to be reaped (a process stuck in uninterruptible sleep) before the
// launcher stops waiting for them: "never hangs" wins over "always reaped" in that corner.
constexpr double kReapAfterKillSeconds = 10;
constexpr auto kPoll = std::chrono::milliseconds(10);
// A typo guard ("--nproc 80000"), far above any node's accelerator count.
constexpr int kMaxProcs = 4096;
// The exit code of a child whose launcher died before prctl took effect.
constexpr int kOrphanExit = 125;

// Signal state. The handler only touches lock-free atomics; the supervision loop forwards.
std::atomic<bool> launch_running{false};
std::atomic<int> first_signal{0};
std::atomic<int> signal_count{0};
std::atomic<int> pending[kNumForwarded];
static_assert(std::atomic<int>::is_always_lock_free,
              "the handler may only touch lock-free atomics");

extern "C" void OnLauncherSignal(int sig) {
  for (int i = 0; i < kNumForwarded; ++i) {
    if (kForwarded[i] == sig) pending[i].fetch_add(1);
  }
  int none = 0;
  first_signal.compare_exchange_strong(none, sig);
  signal_count.fetch_add(1);
}

// Installs the forwarding handlers for one LaunchLocal and restores the previous ones after.
// A signal the process ignores (nohup's SIGHUP) stays ignored, in the launcher and the ranks.
class SignalScope {
 public:
  SignalScope() {
    first_signal.store(0);
    signal_count.store(0);
    for (int i = 0; i < kNumForwarded; ++i) {
      pending[i].store(0);
      struct sigaction action;
      std::memset(&action, 0, sizeof(action));
      action.sa_handler = OnLauncherSignal;
      sigemptyset(&action.sa_mask);
      ::sigaction(kForwarded[i], nullptr, &previous_[i]);
      installed_[i] = previous_[i].sa_handler != SIG_IGN;
      if (installed_[i]) ::sigaction(kForwarded[i], &action, nullptr);
    }
  }
  ~SignalScope() {
    for (int i = 0; i < kNumForwarded; ++i) {
      if (installed_[i]) ::sigaction(kForwarded[i], &previous_[i], nullptr);
    }
    launch_running.store(false);
  }
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;

  bool installed(int i) const { return installed_[i]; }

 private:
  struct sigaction previous_[kNumForwarded];
  bool installed_[kNumForwarded] = {};
};

std::string SignalName(int sig) {
  switch (sig) {
    case SIGHUP: return "SIGHUP";
    case SIGINT: return "SIGINT";
    case SIGQUIT: return "SIGQUIT";
    case SIGILL: return "SIGILL";
    case SIGTRAP: return "SIGTRAP";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGKILL: return "SIGKILL";
    case SIGUSR1: return "SIGUSR1";
    case SIGSEGV: return "SIGSEGV";
    case SIGUSR2: return "SIGUSR2";
    case SIGPIPE: return "SIGPIPE";
    case SIGALRM: return "SIGALRM";
    case SIGTERM: return "SIGTERM";
    case SIGXCPU: return "SIGXCPU";
    case SIGXFSZ: return "SIGXFSZ";
    case SIGSYS: return "SIGSYS";
    default: break;
  }
  if (sig >= SIGRTMIN && sig <= SIGRTMAX) return absl::StrCat("SIGRTMIN+", sig - SIGRTMIN);
  return "unnamed";
}

std::string DescribeEnd(int rank, int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return absl::StrCat("rank ", rank, " was killed by signal ", sig, " (", SignalName(sig), ")");
  }
  return absl::StrCat("rank ", rank, " exited with code ", WEXITSTATUS(status));
}

bool Failed(int status) { return !WIFEXITED(status) || WEXITSTATUS(status) != 0; }

std::vector<std::string> RankEnvironment(const LaunchOptions& options, int port, int rank) {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const std::string_view name = text.substr(0, text.find('='));
    bool ours = name == options.launched_variable;
    for (const std::string& key : RankEnvVariables()) ours = ours || key == name;
    if (!ours) env.emplace_back(text);
  }
  const std::string n = absl::StrCat(options.nproc);
  env.push_back(absl::StrCat("RANK=", rank));
  env.push_back(absl::StrCat("LOCAL_RANK=", rank));
  env.push_back("WORLD_SIZE=" + n);
  env.push_back("LOCAL_WORLD_SIZE=" + n);
  env.push_back("MASTER_ADDR=" + options.master_addr);
  env.push_back(absl::StrCat("MASTER_PORT=", port));
  env.push_back(options.launched_variable + "=1");
  return env;
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

const std::string& Executable(const LaunchOptions& options) {
  return options.executable.empty() ? options.argv[0] : options.executable;
}

Clock::duration FromSeconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// Starts the ranks and supervises them until all are reaped (or given up on after SIGKILL).
class Supervisor {
 public:
  Supervisor(const LaunchOptions& options, const SignalScope& signals, std::ostream& log)
      : options_(options), signals_(signals), log_(log) {}
  ~Supervisor() {
    // Only when Start failed part-way or Wait never ran: no rank is left behind.
    if (!waited_) KillAndReapAll();
  }

  absl::Status Start(int port) {
    std::vector<std::string> args = options_.argv;
    std::vector<char*> argv = Pointers(args);
    for (int rank = 0; rank < options_.nproc; ++rank) {
      std::vector<std::string> env = RankEnvironment(options_, port, rank);
      std::vector<char*> envp = Pointers(env);
      UCP_ASSIGN_OR_RETURN(const pid_t pid,
                           Spawn(Executable(options_).c_str(), argv.data(), envp.data()));
      pids_.push_back(pid);
      status_.push_back(0);
      reaped_.push_back(false);
    }
    return absl::OkStatus();
  }

  LaunchResult Wait();

 private:
  absl::StatusOr<pid_t> Spawn(const char* executable, char** argv, char** envp);
  void SignalLive(int sig);
  int Reap(Clock::time_point now);
  void KillAndReapAll();
  void StartDeadline(Clock::time_point now, const std::string& why);
  std::vector<int> Live() const;

  const LaunchOptions& options_;
  const SignalScope& signals_;
  std::ostream& log_;
  std::vector<pid_t> pids_;
  std::vector<int> status_;
  std::vector<bool> reaped_;
  int first_failed_ = -1;
  std::optional<Clock::time_point> term_at_, kill_at_, give_up_at_;
  bool term_sent_ = false, kill_sent_ = false, waited_ = false;
};

// fork + execve; an exec failure comes back through a close-on-exec pipe as the errno.
absl::StatusOr<pid_t> Supervisor::Spawn(const char* executable, char** argv, char** envp) {
  // Prepared before fork: between fork and exec only async-signal-safe calls.
  struct sigaction default_action;
  std::memset(&default_action, 0, sizeof(default_action));
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  sigset_t empty_mask;
  sigemptyset(&empty_mask);
  const pid_t parent = ::getpid();

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoToStatus(errno, "pipe");
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return ErrnoToStatus(err, "fork");
  }
  if (pid == 0) {
    ::close(fds[0]);
    // Our handlers would swallow a death signal that arrives before exec.
    for (int i = 0; i < kNumForwarded; ++i) {
      if (signals_.installed(i)) ::sigaction(kForwarded[i], &default_action, nullptr);
    }
    ::sigprocmask(SIG_SETMASK, &empty_mask, nullptr);
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    // The launcher may have died before prctl: the death signal would never come.
    if (::getppid() != parent) ::_exit(kOrphanExit);
    ::execve(executable, argv, envp);
    const int err = errno;
    [[maybe_unused]] ssize_t ignored = ::write(fds[1], &err, sizeof(err));
    ::_exit(127);
  }
  ::close(fds[1]);
  // Also here: a signal sent before the child ran its setpgid must still reach its group (after
  // the child's exec this fails with EACCES, harmlessly).
  ::setpgid(pid, pid);
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(fds[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  ::close(fds[0]);
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return ErrnoToStatus(child_errno, absl::StrCat("cannot execute ", executable));
  }
  return pid;
}

std::vector<int> Supervisor::Live() const {
  std::vector<int> live;
  for (size_t r = 0; r < pids_.size(); ++r) {
    if (!reaped_[r]) live.push_back(static_cast<int>(r));
  }
  return live;
}

// Signals the process group of every rank not reaped yet: an unreaped rank (even a zombie) keeps
// its pid, so the id cannot name someone else's process.
void Supervisor::SignalLive(int sig) {
  for (int r : Live()) {
    if (::kill(-pids_[r], sig) != 0) ::kill(pids_[r], sig);
  }
}

void Supervisor::StartDeadline(Clock::time_point now, const std::string& why) {
  if (term_at_.has_value()) return;
  term_at_ = now + FromSeconds(options_.grace_seconds);
  const std::vector<int> live = Live();
  if (!live.empty()) {
    log_ << options_.name << ": " << why << "; the other " << live.size() << " rank(s) get "
         << options_.grace_seconds << " s to exit before SIGTERM\n";
  }
}

// Reaps what has ended; returns the number of ranks still running.
int Supervisor::Reap(Clock::time_point now) {
  int live = 0;
  int signalled = -1, exited = -1;  // the first rank of this pass that failed each way
  for (size_t r = 0; r < pids_.size(); ++r) {
    if (reaped_[r]) continue;
    int status = 0;
    const pid_t got = ::waitpid(pids_[r], &status, WNOHANG);
    if (got == 0 || (got < 0 && errno == EINTR)) {
      ++live;
      continue;
    }
    // got < 0 (ECHILD: someone else reaped it, SIGCHLD ignored): count it as ended, unknown code.
    reaped_[r] = true;
    status_[r] = got < 0 ? (255 << 8) : status;
    if (!Failed(status_[r])) continue;
    log_ << options_.name << ": " << DescribeEnd(static_cast<int>(r), status_[r]) << "\n";
    int& first = WIFSIGNALED(status_[r]) ? signalled : exited;
    if (first < 0) first = static_cast<int>(r);
  }
  // A rank killed by a signal is the likelier cause of ranks that exited 1 in the same 10 ms.
  if (first_failed_ < 0 && (signalled >= 0 || exited >= 0)) {
    first_failed_ = signalled >= 0 ? signalled : exited;
    StartDeadline(now, DescribeEnd(first_failed_, status_[first_failed_]));
  }
  return live;
}

LaunchResult Supervisor::Wait() {
  waited_ = true;
  int seen_signals = 0;
  for (;;) {
    for (int i = 0; i < kNumForwarded; ++i) {
      if (pending[i].exchange(0) > 0) SignalLive(kForwarded[i]);
    }
    const Clock::time_point now = Clock::now();
    const int count = signal_count.load();
    if (count != seen_signals) {
      const std::string name = SignalName(first_signal.load());
      if (seen_signals == 0) {
        StartDeadline(now, "interrupted by " + name + ", forwarded to the ranks");
      }
      if (count >= 2 && !term_sent_) term_at_ = now;  // a second interrupt: no more grace
      seen_signals = count;
    }
    if (Reap(now) == 0) break;
    if (term_at_ && !term_sent_ && now >= *term_at_) {
      log_ << options_.name << ": sending SIGTERM to rank(s) " << absl::StrJoin(Live(), ", ")
           << "\n";
      SignalLive(SIGTERM);
      term_sent_ = true;
      kill_at_ = now + FromSeconds(kKillAfterTermSeconds);
    }
    if (kill_at_ && !kill_sent_ && now >= *kill_at_) {
      log_ << options_.name << ": sending SIGKILL to rank(s) " << absl::StrJoin(Live(), ", ")
           << "\n";
      SignalLive(SIGKILL);
      kill_sent_ = true;
      give_up_at_ = now + FromSeconds(kReapAfterKillSeconds);
    }
    if (give_up_at_ && now >= *give_up_at_) break;
    const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(kPoll).count();
    const struct timespec pause = {0, static_cast<long>(nanos)};
    ::nanosleep(&pause, nullptr);  // a signal cuts it short: fine, the loop looks again
  }

  LaunchResult result;
  std::vector<std::string> parts;
  const int sig = first_signal.load();
  if (sig != 0) parts.push_back("interrupted by " + SignalName(sig));
  if (first_failed_ >= 0) parts.push_back(DescribeEnd(first_failed_, status_[first_failed_]));
  const std::vector<int> stuck = Live();
  if (!stuck.empty()) {
    parts.push_back(
        absl::StrCat("rank(s) ", absl::StrJoin(stuck, ", "), " still not reaped after SIGKILL"));
    log_ << options_.name << ": " << parts.back() << "\n";
  }
  result.first_failed_rank = first_failed_;
  result.message = absl::StrJoin(parts, "; ");
  result.exit_code = sig != 0 ? 128 + sig : (parts.empty() ? 0 : 1);
  return result;
}

// Start failed part-way: the ranks already running cannot form a world; end them now.
void Supervisor::KillAndReapAll() {
  SignalLive(SIGKILL);
  const Clock::time_point until = Clock::now() + FromSeconds(kReapAfterKillSeconds);
  while (Reap(Clock::now()) > 0 && Clock::now() < until) {
    const struct timespec pause = {0, 10'000'000};
    ::nanosleep(&pause, nullptr);
  }
}

}  // namespace

absl::StatusOr<LaunchResult> LaunchLocal(const LaunchOptions& options) {
  if (options.nproc < 1 || options.nproc > kMaxProcs) {
    return absl::InvalidArgumentError(
        absl::StrCat("nproc must be 1..", kMaxProcs, ", not ", options.nproc));
  }
  if (options.argv.empty() || options.argv[0].empty()) {
    return absl::InvalidArgumentError("no command to launch");
  }
  if (options.master_port < 0 || options.master_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("master port ", options.master_port, " is not a port (1..65535, 0: free)"));
  }
  if (!(options.grace_seconds >= 0)) {
    return absl::InvalidArgumentError("grace_seconds must be >= 0");
  }
  // Checked here too, for a plain error instead of N failed ranks (the exec check stays: races).
  if (::access(Executable(options).c_str(), X_OK) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot execute ", Executable(options)));
  }
  const int port = options.master_port != 0 ? options.master_port : FreeLocalPort();
  if (port == 0) return absl::UnavailableError("no free TCP port on 127.0.0.1 for MASTER_PORT");

  bool idle = false;
  if (!launch_running.compare_exchange_strong(idle, true)) {
    return absl::FailedPreconditionError("another LaunchLocal is running in this process");
  }
  std::ostream null_log(nullptr);
  std::ostream& log = options.log != nullptr ? *options.log : null_log;
  log.flush();          // a buffered line must not be written twice (fork copies the buffer)
  SignalScope signals;  // owns launch_running from here
  Supervisor supervisor(options, signals, log);
  UCP_RETURN_IF_ERROR(supervisor.Start(port));
  return supervisor.Wait();
}

int FreeLocalPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  struct sockaddr_in address;
  std::memset(&address, 0, sizeof(address));
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  int port = 0;
  if (::bind(fd, reinterpret_cast<struct sockaddr*>(&address), sizeof(address)) == 0 &&
      ::getsockname(fd, reinterpret_cast<struct sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace ucp::converters::launch
