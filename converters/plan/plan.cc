#include "converters/plan/plan.h"

#include <algorithm>
#include <map>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "formats/base/byte_size.h"
#include "formats/base/checked_math.h"
#include "formats/base/status.h"

namespace ucp::converters::plan {
namespace {

absl::Status Broken(const PlanFile& f, absl::string_view what) {
  return absl::InternalError(absl::StrCat("plan: ", f.path, ": ", what));
}

bool SafePath(absl::string_view path) {
  if (path.empty() || path.front() == '/' || path.find('\0') != absl::string_view::npos)
    return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

absl::Status ValidateRegion(const Plan& plan, const PlanFile& f, const Region& r) {
  if (!RangeInside(r.offset, r.size, f.size)) return Broken(f, "region outside the file");
  uint64_t at = r.offset;
  for (const CopyOp& op : r.ops) {
    if (op.source < 0 || op.source >= static_cast<int>(plan.sources.size()))
      return Broken(f, "bad source index");
    if (op.dest_offset != at || op.length == 0)
      return Broken(f, absl::StrCat("ops do not tile the region at ", at));
    if (!RangeInside(op.source_offset, op.length, plan.sources[op.source].size)) {
      return Broken(f, absl::StrCat("op reads outside ", plan.sources[op.source].path));
    }
    at += op.length;
  }
  if (at != r.offset + r.size)
    return Broken(f, absl::StrCat("ops cover ", at - r.offset, " of ", r.size, " bytes"));
  return absl::OkStatus();
}

std::string Bytes(uint64_t n) { return HumanBytes(static_cast<double>(n)); }

}  // namespace

const char* FileRoleName(FileRole role) {
  switch (role) {
    case FileRole::kParamState: return "param_state";
    case FileRole::kStep: return "step";
    case FileRole::kOptimizerState: return "optimizer_state";
    case FileRole::kModelCopy: return "model_copy";
    case FileRole::kModelRewrite: return "model_rewrite";
    case FileRole::kWeights: return "weights";
  }
  return "?";
}

uint64_t Plan::TotalBytes() const {
  uint64_t n = 0;
  for (const PlanFile& f : files) n += f.size;
  return n;
}

uint64_t Plan::CopyBytes() const {
  uint64_t n = 0;
  for (const PlanFile& f : files) {
    for (const Region& r : f.regions) n += r.size;
  }
  return n;
}

size_t Plan::NumOps() const {
  size_t n = 0;
  for (const PlanFile& f : files) {
    for (const Region& r : f.regions) n += r.ops.size();
  }
  return n;
}

std::vector<std::string> Plan::Directories() const {
  absl::btree_set<std::string> dirs;
  for (const PlanFile& f : files) {
    for (size_t slash = f.path.find('/'); slash != std::string::npos;
         slash = f.path.find('/', slash + 1)) {
      dirs.insert(f.path.substr(0, slash));
    }
  }
  return {dirs.begin(), dirs.end()};  // "zero" sorts before "zero/x"
}

absl::Status AppendPlan(Plan from, size_t shared, Plan* into) {
  if (shared > from.sources.size() || shared > into->sources.size()) {
    return absl::InternalError("AppendPlan: fewer sources than shared");
  }
  for (size_t i = 0; i < shared; ++i) {
    if (from.sources[i].path != into->sources[i].path ||
        from.sources[i].memory != into->sources[i].memory) {
      return absl::InternalError(absl::StrCat("AppendPlan: source ", i, " differs (",
                                              from.sources[i].path, ", ", into->sources[i].path,
                                              ")"));
    }
  }
  std::vector<int> renumber(from.sources.size());
  for (size_t i = 0; i < from.sources.size(); ++i) {
    renumber[i] = static_cast<int>(i < shared ? i : into->sources.size());
    if (i >= shared) into->sources.push_back(std::move(from.sources[i]));
  }
  for (PlanFile& f : from.files) {
    for (Region& r : f.regions) {
      for (CopyOp& op : r.ops) op.source = renumber[op.source];
    }
    into->files.push_back(std::move(f));
  }
  return absl::OkStatus();
}

PlanFile FramedFile(std::string path, FileRole role, ucp::TorchFrame frame,
                    std::vector<Region> regions) {
  PlanFile file;
  file.path = std::move(path);
  file.role = role;
  file.size = frame.file_size;
  file.frame = std::move(frame);
  file.regions = std::move(regions);
  return file;
}

absl::Status ValidatePlan(const Plan& plan) {
  absl::flat_hash_set<std::string> paths;
  for (const PlanFile& f : plan.files) {
    if (!SafePath(f.path)) return Broken(f, "unsafe path");
    if (!paths.insert(f.path).second) return Broken(f, "listed twice");
    if (f.writer) {
      if (f.frame || !f.regions.empty())
        return Broken(f, "a written file has no frame nor regions");
      continue;
    }
    if (f.frame) {
      if (f.frame->file_size != f.size) return Broken(f, "frame size differs from the file size");
      if (f.frame->storages.size() != f.regions.size())
        return Broken(f, "one region per storage expected");
      for (size_t i = 0; i < f.regions.size(); ++i) {
        if (f.regions[i].offset != f.frame->storages[i].payload_offset ||
            f.regions[i].size != f.frame->storages[i].size) {
          return Broken(f, absl::StrCat("region ", i, " is not storage ", i, "'s payload"));
        }
      }
    } else if (f.regions.size() != 1 || f.regions[0].offset != 0 || f.regions[0].size != f.size) {
      return Broken(f, "a copied file needs one region covering it");
    }
    std::vector<std::pair<uint64_t, uint64_t>> spans;
    for (const Region& r : f.regions) {
      UCP_RETURN_IF_ERROR(ValidateRegion(plan, f, r));
      spans.emplace_back(r.offset, r.size);
    }
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i) {
      if (spans[i - 1].first + spans[i - 1].second > spans[i].first)
        return Broken(f, "regions overlap");
    }
  }
  return absl::OkStatus();
}

std::string Summary(const Plan& plan) {
  const PlanInfo& i = plan.info;
  std::map<FileRole, std::pair<int, uint64_t>> by_role;
  for (const PlanFile& f : plan.files) {
    by_role[f.role].first++;
    by_role[f.role].second += f.size;
  }
  std::string out = absl::StrCat("input:     ", i.input, "\n");
  absl::StrAppend(&out, "detected:  ZeRO-", i.zero_stage, " (", i.wrapper, "), dp=", i.dp_size,
                  " tp=", i.tp_size, " pp=", i.pp_size);
  if (i.autoep_layers > 0)
    absl::StrAppend(&out, ", AutoEP ep=", i.ep_size, " (", i.autoep_layers, " layers)");
  absl::StrAppend(&out, "\n           master ", i.master_dtype, ", optimizer states ",
                  i.state_dtype, ", ", i.param_groups, " param groups\n");
  absl::StrAppend(&out, "params:    ", i.params, " with optimizer state");
  if (i.expert_params > 0) absl::StrAppend(&out, " (", i.expert_params, " fused expert weights)");
  if (i.frozen_params > 0) {
    absl::StrAppend(&out, "; ", i.frozen_params, " frozen",
                    i.pipeline == "zero_to_ucp" ? " (in the model states, not in zero/)" : "");
  }
  absl::StrAppend(&out, "\noutput:    ", plan.files.size(), " files, ", Bytes(plan.TotalBytes()),
                  "\n");
  for (const auto& [role, count] : by_role) {
    absl::StrAppendFormat(&out, "           %-16s %6d files %12s\n", FileRoleName(role),
                          count.first, Bytes(count.second));
  }
  absl::flat_hash_set<int> used;
  for (const PlanFile& f : plan.files) {
    for (const Region& r : f.regions) {
      for (const CopyOp& op : r.ops) used.insert(op.source);
    }
  }
  size_t computed = 0;  // TP averages the planner computed (PlanSource::memory)
  for (int s : used) computed += plan.sources[s].memory != nullptr ? 1 : 0;
  absl::StrAppend(&out, "copies:    ", Bytes(plan.CopyBytes()), " in ", plan.NumOps(),
                  " ranges from ", used.size() - computed, " source files",
                  computed > 0 ? absl::StrCat(" and ", computed, " computed TP averages") : "",
                  "\n");
  for (const std::string& note : i.notes) absl::StrAppend(&out, "note:      ", note, "\n");
  for (const std::string& w : i.warnings) absl::StrAppend(&out, "warning:   ", w, "\n");
  return out;
}

nlohmann::json ToJson(const Plan& plan, bool with_ops) {
  const PlanInfo& i = plan.info;
  nlohmann::json info = {{"pipeline", i.pipeline},
                         {"input", i.input},
                         {"wrapper", i.wrapper},
                         {"zero_stage", i.zero_stage},
                         {"dp_size", i.dp_size},
                         {"tp_size", i.tp_size},
                         {"pp_size", i.pp_size},
                         {"ep_size", i.ep_size},
                         {"master_dtype", i.master_dtype},
                         {"state_dtype", i.state_dtype},
                         {"param_groups", i.param_groups},
                         {"params", i.params},
                         {"expert_params", i.expert_params},
                         {"autoep_layers", i.autoep_layers},
                         {"frozen_params", i.frozen_params},
                         {"notes", i.notes},
                         {"warnings", i.warnings}};
  nlohmann::json sources = nlohmann::json::array();
  for (const PlanSource& s : plan.sources) sources.push_back({{"path", s.path}, {"size", s.size}});
  nlohmann::json files = nlohmann::json::array();
  for (const PlanFile& f : plan.files) {
    nlohmann::json regions = nlohmann::json::array();
    for (const Region& r : f.regions) {
      nlohmann::json region = {{"offset", r.offset}, {"size", r.size}, {"num_ops", r.ops.size()}};
      if (with_ops) {
        nlohmann::json ops = nlohmann::json::array();
        for (const CopyOp& op : r.ops)
          ops.push_back({op.source, op.source_offset, op.length, op.dest_offset});
        region["ops"] = std::move(ops);  // [source, source_offset, length, dest_offset]
      }
      regions.push_back(std::move(region));
    }
    nlohmann::json file = {{"path", f.path},
                           {"role", FileRoleName(f.role)},
                           {"size", f.size},
                           {"regions", std::move(regions)}};
    if (f.frame) file["pickle_bytes"] = f.frame->pickle.size();
    if (f.writer) file["written_by_library"] = true;
    files.push_back(std::move(file));
  }
  return {{"info", std::move(info)},        {"sources", std::move(sources)},
          {"files", std::move(files)},      {"total_bytes", plan.TotalBytes()},
          {"copy_bytes", plan.CopyBytes()}, {"num_ops", plan.NumOps()}};
}

}  // namespace ucp::converters::plan
