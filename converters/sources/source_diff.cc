#include "converters/sources/source_diff.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "converters/sources/expert_layouts.h"
#include "formats/base/status.h"

namespace ucp::converters::sources {
namespace {

using ucp::ParamMeta;
using ucp::ParamState;
using ucp::Source;

bool IsWeightsOnly(const Source& s) {
  return s.kind() == ucp::SourceKind::kSafetensors || s.kind() == ucp::SourceKind::kTorchWeights ||
         s.kind() == ucp::SourceKind::kHdf5;
}

// Fills e's max_abs_diff, max_rel_diff and num_different from the elements as doubles. Equal values
// (NaN on both sides, +0 and -0 too) count as equal; a NaN or an infinity against another value is
// an infinite difference.
void CompareValues(DType da, const Buffer& a, DType db, const Buffer& b, double atol,
                   DiffEntry& e) {
  const size_t ea = DTypeSize(da), eb = DTypeSize(db);
  for (int64_t i = 0; i < e.numel; ++i) {
    const double x = ElementAsDouble(da, a.data() + i * ea);
    const double y = ElementAsDouble(db, b.data() + i * eb);
    if (x == y || (std::isnan(x) && std::isnan(y))) continue;
    double abs = INFINITY, rel = INFINITY;
    if (std::isfinite(x) && std::isfinite(y)) {
      abs = std::fabs(x - y);
      rel = abs / std::max(std::fabs(x), std::fabs(y));
    }
    e.max_abs_diff = std::max(e.max_abs_diff, abs);
    e.max_rel_diff = std::max(e.max_rel_diff, rel);
    if (abs > atol) ++e.num_different;
  }
}

// One state of one parameter: bitwise equal, or how far apart as doubles.
DiffEntry CompareState(const std::string& name, ParamState state, DType da, const Buffer& ba,
                       DType db, const Buffer& bb, int64_t numel, double atol) {
  DiffEntry e{name, std::string(ucp::ParamStateName(state)), DiffStatus::kEqual, 0, ""};
  e.numel = numel;
  if (da == db && ba.size() == bb.size() && std::memcmp(ba.data(), bb.data(), ba.size()) == 0)
    return e;
  CompareValues(da, ba, db, bb, atol, e);
  if (da != db) e.detail = absl::StrCat(DTypeName(da), " vs ", DTypeName(db));
  e.status = e.num_different == 0 ? DiffStatus::kWithinTolerance : DiffStatus::kDifferent;
  return e;
}

bool Lists(const Source& s, const char* key, const std::string& name) {
  const nlohmann::json& extra = s.info().extra;
  if (!extra.contains(key)) return false;
  const nlohmann::json& names = extra[key];
  return std::find(names.begin(), names.end(), name) != names.end();
}

// A parameter `has` holds and `lacks` does not: what the UCP sides' model files say of it (a UCP
// opened partial, open_source.h).
DiffEntry Missing(const std::string& name, const Source& has, const Source& lacks,
                  DiffStatus status) {
  std::string detail;
  if (Lists(has, "params_undeclared", name)) {
    detail = absl::StrCat("zero/", name, " is not in param_shapes of ", has.info().path,
                          "'s model states");
  } else if (Lists(lacks, "params_missing", name)) {
    detail = absl::StrCat("param_shapes of ", lacks.info().path, " declares it, but zero/", name,
                          " is missing");
  }
  return {name, "", status, 0, detail};
}

}  // namespace

const char* DiffStatusName(DiffStatus status) {
  switch (status) {
    case DiffStatus::kEqual: return "equal";
    case DiffStatus::kWithinTolerance: return "within_tolerance";
    case DiffStatus::kDifferent: return "different";
    case DiffStatus::kShapeMismatch: return "shape_mismatch";
    case DiffStatus::kMissingInA: return "missing_in_a";
    case DiffStatus::kMissingInB: return "missing_in_b";
    case DiffStatus::kStepDiffers: return "step_differs";
  }
  return "?";
}

bool DiffReport::equal() const {
  for (const DiffEntry& e : entries) {
    if (e.status != DiffStatus::kEqual && e.status != DiffStatus::kWithinTolerance) return false;
  }
  return true;
}

std::map<std::string, int> DiffReport::Counts() const {
  std::map<std::string, int> counts;
  for (DiffStatus s : {DiffStatus::kEqual, DiffStatus::kWithinTolerance, DiffStatus::kDifferent,
                       DiffStatus::kShapeMismatch, DiffStatus::kMissingInA, DiffStatus::kMissingInB,
                       DiffStatus::kStepDiffers}) {
    counts[DiffStatusName(s)] = 0;
  }
  for (const DiffEntry& e : entries) ++counts[DiffStatusName(e.status)];
  return counts;
}

nlohmann::json DiffReport::ToJson() const {
  nlohmann::json out;
  out["equal"] = equal();
  out["weights_only"] = weights_only;
  out["params_compared"] = params_compared;
  out["states_compared"] = states_compared;
  out["counts"] = Counts();
  out["entries"] = nlohmann::json::array();
  for (const DiffEntry& e : entries) {
    nlohmann::json j = {{"name", e.name},
                        {"state", e.state},
                        {"status", DiffStatusName(e.status)},
                        {"weights_only", e.weights_only}};
    if (e.status == DiffStatus::kWithinTolerance || e.status == DiffStatus::kDifferent) {
      j.update({{"max_abs_diff", e.max_abs_diff},
                {"max_rel_diff", e.max_rel_diff},
                {"num_different", e.num_different},
                {"numel", e.numel}});
    }
    if (e.status == DiffStatus::kStepDiffers) j["max_abs_diff"] = e.max_abs_diff;
    if (!e.detail.empty()) j["detail"] = e.detail;
    out["entries"].push_back(std::move(j));
  }
  return out;
}

absl::StatusOr<DiffReport> DiffSources(const Source& a, const Source& b,
                                       const DiffOptions& options) {
  DiffReport report;
  const bool weights_only = IsWeightsOnly(a) || IsWeightsOnly(b);
  report.weights_only = weights_only;
  // Expert weights a weights export stores in another layout (expert_layouts.h): which stacked
  // parameters it has, and which of its tensors they are made of.
  const Source* export_side = IsWeightsOnly(b) && !IsWeightsOnly(a)   ? &b
                              : IsWeightsOnly(a) && !IsWeightsOnly(b) ? &a
                                                                      : nullptr;
  const Source* stacked_side = export_side == &b ? &a : export_side == &a ? &b : nullptr;
  std::map<std::string, int> native_local;
  std::set<std::string> assembled, consumed;
  const bool fp32 = std::find(options.states.begin(), options.states.end(), ParamState::kFp32) !=
                    options.states.end();
  if (export_side != nullptr && fp32) {
    native_local = NativeLocalExperts(*stacked_side);
    for (const ParamMeta& p : stacked_side->params()) {
      if (!p.expert) continue;
      // A native expert's stacked name is also global expert <local>'s name in the export.
      if (const ParamMeta* same = export_side->Find(p.name);
          same != nullptr && same->shape == p.shape)
        continue;
      UCP_ASSIGN_OR_RETURN(std::optional<AssembledExpert> e,
                           AssembleExpert(*export_side, p, native_local, false));
      if (!e) continue;
      assembled.insert(p.name);
      consumed.insert(e->names.begin(), e->names.end());
    }
  }
  // Compares stacked expert `p` with its assembled form; `stacked_is_a` orders the two sides.
  auto compare_assembled = [&](const ParamMeta& p, bool stacked_is_a) -> absl::Status {
    UCP_ASSIGN_OR_RETURN(std::optional<AssembledExpert> e,
                         AssembleExpert(*export_side, p, native_local, true));
    UCP_ASSIGN_OR_RETURN(Buffer bytes, stacked_side->StateBytes(p, ParamState::kFp32));
    UCP_ASSIGN_OR_RETURN(int64_t numel, p.shape.NumElements());
    const DType dp = p.state(ParamState::kFp32)->dtype;
    ++report.params_compared;
    ++report.states_compared;
    DiffEntry entry = stacked_is_a ? CompareState(p.name, ParamState::kFp32, dp, bytes, e->dtype,
                                                  e->bytes, numel, options.atol)
                                   : CompareState(p.name, ParamState::kFp32, e->dtype, e->bytes, dp,
                                                  bytes, numel, options.atol);
    entry.weights_only = true;
    report.entries.push_back(std::move(entry));
    return absl::OkStatus();
  };
  for (const ParamMeta& pa : a.params()) {
    if (stacked_side == &a && assembled.count(pa.name) > 0) {
      UCP_RETURN_IF_ERROR(compare_assembled(pa, true));
      continue;
    }
    if (export_side == &a && consumed.count(pa.name) > 0)
      continue;  // compared with its stacked form
    const ParamMeta* pb = b.Find(pa.name);
    if (pb == nullptr) {
      report.entries.push_back(Missing(pa.name, a, b, DiffStatus::kMissingInB));
      continue;
    }
    ++report.params_compared;
    if (!(pa.shape == pb->shape)) {
      report.entries.push_back({pa.name, "", DiffStatus::kShapeMismatch, 0,
                                absl::StrCat(pa.shape.ToString(), " vs ", pb->shape.ToString())});
      continue;
    }
    for (ParamState state : options.states) {
      if (weights_only && state != ParamState::kFp32) continue;
      if (!pa.has_state(state) || !pb->has_state(state)) {
        if (pa.has_state(state) != pb->has_state(state) && !weights_only && pa.role == pb->role) {
          report.entries.push_back(
              {pa.name, std::string(ucp::ParamStateName(state)),
               pa.has_state(state) ? DiffStatus::kMissingInB : DiffStatus::kMissingInA, 0, ""});
        }
        continue;
      }
      ++report.states_compared;
      UCP_ASSIGN_OR_RETURN(Buffer ba, a.StateBytes(pa, state));
      UCP_ASSIGN_OR_RETURN(Buffer bb, b.StateBytes(*pb, state));
      UCP_ASSIGN_OR_RETURN(int64_t numel, pa.shape.NumElements());
      report.entries.push_back(CompareState(pa.name, state, pa.state(state)->dtype, ba,
                                            pb->state(state)->dtype, bb, numel, options.atol));
      report.entries.back().weights_only = weights_only;
    }
    if (options.compare_steps && pa.step && pb->step && *pa.step != *pb->step) {
      report.entries.push_back({pa.name, "step", DiffStatus::kStepDiffers,
                                std::fabs(*pa.step - *pb->step),
                                absl::StrCat(*pa.step, " vs ", *pb->step)});
    }
  }
  for (const ParamMeta& pb : b.params()) {
    if (stacked_side == &b && assembled.count(pb.name) > 0) {
      UCP_RETURN_IF_ERROR(compare_assembled(pb, false));
    } else if (export_side == &b && consumed.count(pb.name) > 0) {
      continue;  // compared with its stacked form
    } else if (a.Find(pb.name) == nullptr) {
      report.entries.push_back(Missing(pb.name, b, a, DiffStatus::kMissingInA));
    }
  }
  return report;
}

}  // namespace ucp::converters::sources
