// `ucp train ...` execs the training runtime's own executable, ucp-train, with the same arguments
// (the toolkit never links LibTorch, so it never pays its start-up). Looked up as $UCP_TRAIN_BIN,
// then beside this executable (an install: bin/ucp-train), then in the build tree
// (<build>/cli/ucp → <build>/runtime/train/ucp-train).
#pragma once

#include <string>

namespace ucp::cli {

// The ucp-train to run, or "" when there is none.
std::string FindTrainExecutable(const std::string& self_exe);
// Execs ucp-train (returns only on failure: prints one error line and returns 1).
int ExecTrain(int argc, char** argv);

}  // namespace ucp::cli
