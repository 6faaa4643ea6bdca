#include "cli/commands/checkpoint_commands.h"

#include <algorithm>
#include <iomanip>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/commands/command_output.h"
#include "cli/commands/human_bytes.h"
#include "cli/commands/option_checks.h"
#include "converters/sources/open_source.h"
#include "converters/sources/source_diff.h"
#include "nlohmann/json.hpp"

namespace ucp::cli {
namespace {

using converters::sources::OpenSource;
using converters::sources::OpenSourceOptions;
using ucp::ParamMeta;
using ucp::ParamRole;
using ucp::ParamState;
using ucp::Source;

const char* RoleName(ParamRole role) {
  switch (role) {
    case ParamRole::kTrainable: return "trainable";
    case ParamRole::kFrozen: return "frozen";
    case ParamRole::kBuffer: return "buffer";
  }
  return "?";
}

std::string Flags(const ParamMeta& p) {
  std::vector<std::string> flags;
  if (p.role != ParamRole::kTrainable) flags.push_back(RoleName(p.role));
  if (!p.tied_to.empty()) flags.push_back(absl::StrCat("tied→", p.tied_to));
  if (p.expert) flags.push_back(absl::StrCat("expert×", p.num_experts));
  return absl::StrJoin(flags, ",");
}

std::vector<std::string> States(const ParamMeta& p) {
  std::vector<std::string> s;
  for (int i = 0; i < ucp::kNumParamStates; ++i) {
    if (p.states[i]) s.push_back(std::string(ucp::ParamStateName(static_cast<ParamState>(i))));
  }
  return s;
}

nlohmann::json InfoJson(const Source& s) {
  const ucp::SourceInfo& i = s.info();
  nlohmann::json j = JsonDocument("inspect");
  j.update(
      {{"kind", std::string(ucp::SourceKindName(s.kind()))},
       {"path", i.path},
       {"tag", i.tag},
       {"step", i.step ? nlohmann::json(*i.step) : nlohmann::json(nullptr)},
       {"zero_stage", i.zero_stage},
       {"optimizer_wrapper", i.optimizer_wrapper},
       {"topology", {{"dp", i.dp_size}, {"tp", i.tp_size}, {"pp", i.pp_size}, {"ep", i.ep_size}}},
       {"master_dtype", std::string(DTypeName(i.master_dtype))},
       {"param_groups", i.param_groups}});
  if (!i.extra.empty()) j["extra"] = i.extra;
  return j;
}

absl::StatusOr<std::vector<ParamState>> ParseStates(const std::vector<std::string>& names) {
  std::vector<ParamState> out;
  for (const std::string& n : names) {
    std::optional<ParamState> s = ucp::ParamStateFromName(n);
    if (!s)
      return absl::InvalidArgumentError(
          absl::StrCat("--states: ", CheckOneOf(n, DiffStateNames())));
    out.push_back(*s);
  }
  return out;
}

}  // namespace

std::vector<absl::string_view> DiffStateNames() {
  std::vector<absl::string_view> names;
  for (int i = 0; i < ucp::kNumParamStates; ++i)
    names.push_back(ucp::ParamStateName(static_cast<ParamState>(i)));
  return names;
}

int RunInspectCheckpoint(const InspectCheckpointOptions& options, std::ostream& out,
                         std::ostream& err) {
  OpenSourceOptions open;
  open.tag = options.tag;
  open.prefer_universal = options.universal;
  absl::StatusOr<std::unique_ptr<Source>> opened = OpenSource(options.path, open);
  if (!opened.ok()) return Fail({out, err, "inspect", options.json}, opened.status());
  const Source& s = **opened;
  uint64_t bytes[ucp::kNumParamStates] = {0, 0, 0};
  int counts[3] = {0, 0, 0};
  int tied = 0, experts = 0;
  int64_t trainable_numel = 0;
  for (const ParamMeta& p : s.params()) {
    if (!p.tied_to.empty()) {
      ++tied;
      continue;
    }
    ++counts[static_cast<int>(p.role)];
    if (p.expert) ++experts;
    if (p.role == ParamRole::kTrainable) trainable_numel += p.shape.NumElements().value_or(0);
    for (int i = 0; i < ucp::kNumParamStates; ++i)
      bytes[i] += ucp::StateNumBytes(p, static_cast<ParamState>(i));
  }
  if (options.json) {
    nlohmann::json j = InfoJson(s);
    j["params"] = nlohmann::json::array();
    for (const ParamMeta& p : s.params()) {
      nlohmann::json pj = {
          {"name", p.name},
          {"shape", std::vector<int64_t>(p.shape.dims().begin(), p.shape.dims().end())},
          {"dtype", p.states[0] ? nlohmann::json(std::string(DTypeName(p.states[0]->dtype)))
                                : nlohmann::json()},
          {"role", RoleName(p.role)},
          {"states", States(p)},
          {"param_group", p.param_group},
          {"partitioning", p.partitioning},
          {"expert", p.expert}};
      if (p.expert) pj["num_experts"] = p.num_experts;
      if (!p.tied_to.empty()) pj["tied_to"] = p.tied_to;
      if (p.step) pj["step"] = *p.step;
      j["params"].push_back(std::move(pj));
    }
    j["totals"] = {
        {"trainable", counts[0]}, {"frozen", counts[1]},       {"buffers", counts[2]},
        {"tied", tied},           {"experts", experts},        {"trainable_numel", trainable_numel},
        {"fp32_bytes", bytes[0]}, {"exp_avg_bytes", bytes[1]}, {"exp_avg_sq_bytes", bytes[2]}};
    WriteJson(out, j);
    return kExitOk;
  }
  const ucp::SourceInfo& i = s.info();
  out << "kind:        " << ucp::SourceKindName(s.kind());
  if (i.zero_stage >= 0)
    out << " (ZeRO-" << i.zero_stage << (i.optimizer_wrapper.empty() ? "" : ", ")
        << i.optimizer_wrapper << ")";
  out << "\npath:        " << i.path << "\n";
  if (!i.tag.empty()) out << "tag:         " << i.tag << "\n";
  if (i.step) out << "step:        " << *i.step << "\n";
  if (s.kind() == ucp::SourceKind::kZero || s.kind() == ucp::SourceKind::kUniversal) {
    out << "topology:    dp " << i.dp_size << ", tp " << i.tp_size << ", pp " << i.pp_size
        << ", ep " << i.ep_size << "\n";
  }
  if (!i.param_groups.empty()) {
    out << "param groups: " << i.param_groups.size() << "\n";
    for (size_t g = 0; g < i.param_groups.size(); ++g)
      out << "  [" << g << "] " << i.param_groups[g].dump() << "\n";
  }
  out << "parameters:  " << counts[0] << " trainable (" << trainable_numel << " elements), "
      << counts[1] << " frozen, " << counts[2] << " buffers, " << tied << " tied aliases, "
      << experts << " expert tensors\n";
  size_t w = 4;
  for (const ParamMeta& p : s.params()) w = std::max(w, p.name.size());
  out << "\n  " << std::left << std::setw(static_cast<int>(w)) << "name"
      << "  " << std::setw(16) << "shape"
      << "  " << std::setw(5) << "dtype"
      << "  " << std::setw(22) << "states"
      << "  partitioning\n";
  int rows = 0;
  for (const ParamMeta& p : s.params()) {
    if (options.max_rows > 0 && rows++ >= options.max_rows) {
      out << "  ... " << s.params().size() - options.max_rows << " more (--max-rows 0 shows all)\n";
      break;
    }
    const std::string flags = Flags(p);
    out << "  " << std::left << std::setw(static_cast<int>(w)) << p.name << "  " << std::setw(16)
        << p.shape.ToString() << "  " << std::setw(5)
        << (p.states[0] ? DTypeName(p.states[0]->dtype) : "") << "  " << std::setw(22)
        << absl::StrJoin(States(p), "+") << "  " << p.partitioning
        << (flags.empty() ? "" : "  [" + flags + "]") << "\n";
  }
  out << "\nsizes:       fp32 " << HumanBytes(bytes[0]) << ", exp_avg " << HumanBytes(bytes[1])
      << ", exp_avg_sq " << HumanBytes(bytes[2]) << "\n";
  return 0;
}

namespace {

using converters::sources::DiffEntry;
using converters::sources::DiffReport;
using converters::sources::DiffStatus;

std::string SideLine(const char* label, const Source& s, const std::string& path) {
  const bool weights =
      s.kind() != ucp::SourceKind::kZero && s.kind() != ucp::SourceKind::kUniversal;
  return absl::StrCat(
      label, ": ", ucp::SourceKindName(s.kind()), " ", path,
      weights ? " (weights only: its tensors are compared with the other side's fp32)" : "", "\n");
}

std::string EntryLine(const DiffEntry& e) {
  std::string state = e.state;
  if (e.weights_only && !state.empty()) absl::StrAppend(&state, ", weights only");
  std::string line = absl::StrCat("  ", converters::sources::DiffStatusName(e.status), "  ", e.name,
                                  state.empty() ? "" : absl::StrCat(" [", state, "]"));
  if (e.status == DiffStatus::kDifferent || e.status == DiffStatus::kWithinTolerance) {
    absl::StrAppend(&line,
                    absl::StrFormat("  max abs %.6g, max rel %.3g, %d of %d elements differ",
                                    e.max_abs_diff, e.max_rel_diff, e.num_different, e.numel));
  }
  if (!e.detail.empty()) absl::StrAppend(&line, "  (", e.detail, ")");
  return line + "\n";
}

std::string SummaryLine(const DiffReport& r, double atol) {
  std::vector<std::string> counts;
  for (const auto& [status, n] : r.Counts()) {
    if (n > 0 && status != "equal") counts.push_back(absl::StrCat(n, " ", status));
  }
  std::string verdict = !r.equal() ? absl::StrJoin(counts, ", ")
                        : atol > 0 ? "equal within atol"
                                   : "all bitwise equal";
  if (r.equal() && !counts.empty())
    absl::StrAppend(&verdict, " (", absl::StrJoin(counts, ", "), ")");
  return absl::StrCat(r.params_compared, " parameters, ", r.states_compared,
                      " states compared: ", verdict, "\n");
}

}  // namespace

int RunDiff(const DiffCommandOptions& options, std::ostream& out, std::ostream& err) {
  const CommandOutput output{out, err, "diff", options.json};
  converters::sources::DiffOptions diff;
  diff.atol = options.atol;
  if (!options.states.empty()) {
    absl::StatusOr<std::vector<ParamState>> states = ParseStates(options.states);
    if (!states.ok()) return Fail(output, states.status(), kExitUsage);
    diff.states = *states;
  }
  OpenSourceOptions oa, ob;
  oa.tag = options.tag_a;
  ob.tag = options.tag_b;
  oa.partial = ob.partial = true;  // a missing file is a missing_in_a / _b entry, not an error
  absl::StatusOr<std::unique_ptr<Source>> a = OpenSource(options.a, oa);
  if (!a.ok()) return Fail(output, a.status());
  absl::StatusOr<std::unique_ptr<Source>> b = OpenSource(options.b, ob);
  if (!b.ok()) return Fail(output, b.status());
  if (!options.json)
    out << SideLine("a", **a, options.a) << SideLine("b", **b, options.b) << std::flush;
  absl::StatusOr<DiffReport> report = converters::sources::DiffSources(**a, **b, diff);
  if (!report.ok()) return Fail(output, report.status());
  const int code = report->equal() ? kExitOk : kExitFailure;
  if (options.json) {
    nlohmann::json j = JsonDocument(output.command);
    j.update(report->ToJson());
    j["a"] = {{"path", options.a}, {"kind", std::string(ucp::SourceKindName((*a)->kind()))}};
    j["b"] = {{"path", options.b}, {"kind", std::string(ucp::SourceKindName((*b)->kind()))}};
    j["atol"] = options.atol;
    WriteJson(out, j);
    return code;
  }
  for (const DiffEntry& e : report->entries) {
    if (options.summary || (e.status == DiffStatus::kEqual && !options.all)) continue;
    out << EntryLine(e);
  }
  out << SummaryLine(*report, options.atol);
  return code;
}

}  // namespace ucp::cli
