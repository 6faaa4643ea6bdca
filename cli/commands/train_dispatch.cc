#include "cli/commands/train_dispatch.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

namespace ucp::cli {

std::string FindTrainExecutable(const std::string& self_exe) {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("UCP_TRAIN_BIN"); env != nullptr && *env != '\0') return env;
  const fs::path dir = fs::path(self_exe).parent_path();
  for (const fs::path& p : {dir / "ucp-train", dir / ".." / "runtime" / "train" / "ucp-train"}) {
    if (access(p.c_str(), X_OK) == 0) return p.lexically_normal().string();
  }
  return "";
}

int ExecTrain(int argc, char** argv) {
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  const std::string exe = FindTrainExecutable(n > 0 ? std::string(self, n) : argv[0]);
  if (exe.empty()) {
    std::fprintf(stderr,
                 "error: 'ucp train' needs the ucp-train executable, which is built when LibTorch "
                 "is found (Debian: libtorch-dev libgloo-dev; or -DTorch_DIR=...); none beside "
                 "this ucp or in $UCP_TRAIN_BIN\n");
    return 1;
  }
  std::vector<char*> args;
  args.push_back(const_cast<char*>(exe.c_str()));
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);  // drop "ucp" and "train"
  args.push_back(nullptr);
  execv(exe.c_str(), args.data());
  std::fprintf(stderr, "error: cannot run %s: %s\n", exe.c_str(), std::strerror(errno));
  return 1;
}

}  // namespace ucp::cli
