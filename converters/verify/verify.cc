// VerifyCheckpoint: picks the checker for the folder, and renders reports. See verify.h.
#include "converters/verify/verify.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "converters/sources/sniff.h"
#include "converters/verify/verify_internal.h"
#include "formats/base/status.h"
#include "formats/torch/torch_file.h"
#include "ucp/manifest.h"
#include "ucp/ucp_layout.h"

namespace ucp::converters::verify {

namespace fs = std::filesystem;

namespace internal_verify {

bool CheckTorchFile(const std::string& dir, const std::string& relative,
                    const VerifyOptions& options, VerifyReport& report) {
  ++report.files_checked;
  absl::StatusOr<formats::torch::TorchFile> file =
      formats::torch::TorchFile::OpenPath((fs::path(dir) / relative).string());
  absl::Status status = file.status();
  if (status.ok() && options.check_crc) status = file->Verify();
  if (status.ok()) return true;
  report.problems.push_back({"file", relative, std::string(status.message())});
  return false;
}

int VerifyManifest(const std::string& dir, VerifyReport& report) {
  absl::StatusOr<ucp::Manifest> manifest = ucp::ReadManifest(dir);
  if (absl::IsNotFound(
          manifest.status())) {  // DeepSpeed writes none; each file's records are CRC-checked
    report.notes.push_back(absl::StrCat("no ", ucp::kManifestFile,
                                        " (DeepSpeed writes none): whole-file sizes and ",
                                        "CRC-32s not compared with a manifest"));
    return 0;
  }
  if (!manifest.ok()) {
    report.problems.push_back(
        {"manifest", std::string(ucp::kManifestFile), std::string(manifest.status().message())});
    return 0;
  }
  absl::StatusOr<std::vector<std::string>> present = ucp::ListFiles(dir);
  if (!present.ok()) {
    report.problems.push_back({"manifest", "", std::string(present.status().message())});
    return 0;
  }
  std::vector<std::string> listed;
  for (const ucp::ManifestEntry& entry : manifest->files) {
    listed.push_back(entry.path);
    std::error_code ec;
    const fs::path file = fs::path(dir) / entry.path;
    if (!fs::is_regular_file(file, ec)) {
      report.problems.push_back({"manifest", entry.path, "listed in the manifest but missing"});
      continue;
    }
    absl::StatusOr<ucp::ManifestEntry> actual = ucp::HashFile(dir, entry.path);
    if (!actual.ok()) {
      report.problems.push_back({"manifest", entry.path, std::string(actual.status().message())});
    } else if (actual->size != entry.size) {
      report.problems.push_back(
          {"manifest", entry.path,
           absl::StrCat("size ", actual->size, " bytes, the manifest says ", entry.size)});
    } else if (actual->crc32 != entry.crc32) {
      report.problems.push_back(
          {"manifest", entry.path,
           absl::StrCat("CRC-32 ", absl::Hex(actual->crc32, absl::kZeroPad8),
                        ", the manifest says ", absl::Hex(entry.crc32, absl::kZeroPad8))});
    }
  }
  std::sort(listed.begin(), listed.end());
  for (const std::string& path : *present) {
    if (path == ucp::kManifestFile) continue;
    if (!std::binary_search(listed.begin(), listed.end(), path)) {
      report.problems.push_back({"manifest", path, "not listed in the manifest"});
    }
  }
  return static_cast<int>(manifest->files.size());
}

void SkipUnknownFiles(const std::string& dir, const std::string& sub,
                      const std::function<bool(const std::string&)>& known, VerifyReport& report) {
  std::error_code ec;
  std::vector<std::string> unknown;
  for (const fs::directory_entry& e : fs::directory_iterator(fs::path(dir) / sub, ec)) {
    const std::string base = e.path().filename().string();
    if (!e.is_directory(ec) && !known(base))
      unknown.push_back(sub.empty() ? base : sub + "/" + base);
  }
  std::sort(unknown.begin(), unknown.end());
  for (const std::string& file : unknown) {
    report.skipped.push_back({"file", file, "not a file of this checkpoint kind: not checked"});
  }
}

}  // namespace internal_verify

absl::StatusOr<VerifyReport> VerifyCheckpoint(const std::string& path,
                                              const VerifyOptions& options) {
  std::error_code ec;
  sources::SniffOptions sniff;
  sniff.tag = options.tag;
  absl::StatusOr<sources::SniffedCheckpoint> sniffed = sources::SniffCheckpoint(path, sniff);
  // What ucp wrote has a manifest: a UCP folder, an export folder, a reshard's save folder. An
  // export whose weights files are gone is still checked against its manifest.
  const bool has_manifest =
      fs::is_regular_file(fs::path(path) / std::string(ucp::kManifestFile), ec);
  if (!sniffed.ok() && has_manifest && options.tag.empty() &&
      absl::IsInvalidArgument(sniffed.status())) {
    sniffed = sources::SniffedCheckpoint{ucp::SourceKind::kSafetensors, path, "", "",
                                         "a folder with a manifest"};
  }
  UCP_RETURN_IF_ERROR(sniffed.status());
  const sources::SniffedCheckpoint& input = *sniffed;
  if (!fs::is_directory(input.path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        ": not a folder (ucp verify checks checkpoint folders; use `ucp inspect --verify FILE`)"));
  }
  VerifyReport report;
  report.path = input.path;
  if (!options.check_crc) report.notes.push_back("the records' CRC-32s were not read (--no-crc)");
  if (input.is_universal()) {
    report.kind = "universal";
    internal_verify::VerifyManifest(input.path, report);
    internal_verify::VerifyUniversal(input.path, options, report);
    return report;
  }
  if (input.is_weights()) {
    report.kind = "export";
    report.files_checked += internal_verify::VerifyManifest(input.path, report);
    if (!has_manifest) {  // nothing was checked: say so rather than pass
      report.skipped.push_back({"manifest", "",
                                absl::StrCat("no ", ucp::kManifestFile,
                                             ": the weights files are not checked "
                                             "(`ucp inspect --verify FILE` reads one)")});
    }
    return report;
  }
  report.kind = "zero";
  if (has_manifest) internal_verify::VerifyManifest(path, report);
  VerifyOptions tag_folder = options;
  tag_folder.tag.clear();
  UCP_RETURN_IF_ERROR(internal_verify::VerifyZero(input.path, tag_folder, report));
  return report;
}

nlohmann::json ReportToJson(const VerifyReport& report) {
  nlohmann::json problems = nlohmann::json::array();
  for (const Problem& p : report.problems) {
    problems.push_back({{"check", p.check}, {"file", p.file}, {"message", p.message}});
  }
  nlohmann::json skipped = nlohmann::json::array();
  for (const Skipped& s : report.skipped) {
    skipped.push_back({{"check", s.check}, {"file", s.file}, {"reason", s.reason}});
  }
  return {{"path", report.path},
          {"kind", report.kind},
          {"ok", report.ok()},
          {"complete", report.complete()},
          {"files_checked", report.files_checked},
          {"params_checked", report.params_checked},
          {"notes", report.notes},
          {"problems", problems},
          {"skipped", skipped}};
}

std::string ReportToText(const VerifyReport& report) {
  std::string text;
  for (const Problem& p : report.problems) {
    absl::StrAppend(&text, p.check, ": ", p.file.empty() ? "" : absl::StrCat(p.file, ": "),
                    p.message, "\n");
  }
  for (const Skipped& s : report.skipped) {
    absl::StrAppend(&text, "skipped: ", s.check, ": ",
                    s.file.empty() ? "" : absl::StrCat(s.file, ": "), s.reason, "\n");
  }
  for (const std::string& note : report.notes) absl::StrAppend(&text, "note: ", note, "\n");
  std::string verdict = !report.ok()        ? absl::StrCat(report.problems.size(), " problem(s)")
                        : report.complete() ? "OK"
                                            : "no problem found";
  if (!report.complete())
    absl::StrAppend(&verdict, "; INCOMPLETE: ", report.skipped.size(), " check(s) skipped");
  absl::StrAppend(&text, report.path, " (", report.kind, "): ", report.files_checked, " files, ",
                  report.params_checked, " parameters checked; ", verdict, "\n");
  return text;
}

}  // namespace ucp::converters::verify
