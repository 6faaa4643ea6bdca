#include "cli/commands/interrupt.h"

#include <signal.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace ucp::cli {
namespace {

std::atomic<bool> cancel_flag{false};
std::atomic<int> first_signal{0};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free,
              "the handler may only touch lock-free atomics");

extern "C" void OnInterrupt(int sig) {
  int none = 0;
  if (!first_signal.compare_exchange_strong(none, sig)) {
    // A second signal: stop now, the way the signal would without a handler.
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    return;
  }
  cancel_flag.store(true);
}

}  // namespace

void InstallInterruptHandlers() {
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_handler = OnInterrupt;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
}

const std::atomic<bool>* CancelFlag() { return &cancel_flag; }

int InterruptSignal() { return first_signal.load(); }

int RunFailed(const CommandOutput& output, const absl::Status& status) {
  const int sig = InterruptSignal();
  if (absl::IsCancelled(status) && sig != 0) {
    return Fail(output,
                absl::StrCat(status.message(), " (", sig == SIGINT ? "SIGINT" : "SIGTERM", ")"),
                128 + sig);
  }
  return Fail(output, status);
}

}  // namespace ucp::cli
