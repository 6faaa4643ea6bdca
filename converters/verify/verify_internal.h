// The per-kind checkers behind VerifyCheckpoint (verify.h); each appends problems to `report`.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "converters/deepspeed/checkpoint_index.h"
#include "converters/verify/verify.h"
#include "formats/torch/torch_file.h"

namespace ucp::converters::verify::internal_verify {

// verify_zero.cc. Errors only when `path` is not a ZeRO checkpoint (ResolveCheckpointDir's).
absl::Status VerifyZero(const std::string& path, const VerifyOptions& options,
                        VerifyReport& report);
// verify_cover.cc: fragments tile each parameter exactly once; partitions = fragments + padding.
void CheckIndexCoverage(const deepspeed::CheckpointIndex& index, VerifyReport& report);
// verify_ucp.cc: zero/<param>/ files, step.pt, model files vs zero/, optimizer_state.pt.
void VerifyUniversal(const std::string& dir, const VerifyOptions& options, VerifyReport& report);
// verify.cc: ucp_manifest.json against the folder (every difference).
int VerifyManifest(const std::string& dir, VerifyReport& report);
// verify.cc: opens a torch.save file (dir/relative) and checks its CRC-32s; a "file" problem on
// failure.
bool CheckTorchFile(const std::string& dir, const std::string& relative,
                    const VerifyOptions& options, VerifyReport& report);
// verify.cc: a "skipped" entry for each regular file of dir/sub (sub "" or a relative folder) whose
// base name `known` rejects: files no check reads are named, not passed over.
void SkipUnknownFiles(const std::string& dir, const std::string& sub,
                      const std::function<bool(const std::string&)>& known, VerifyReport& report);
// A step value: an int, a float, or a 1-element tensor (torch.optim keeps a 0-dim float32 tensor);
// nullopt for anything else.
std::optional<double> StepValue(const formats::torch::TorchFile& file,
                                const formats::torch::Value* v);

}  // namespace ucp::converters::verify::internal_verify
