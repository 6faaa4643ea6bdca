#include "converters/sources/source_diff.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"

namespace ucp::converters::sources {
namespace {

using store::ParamMeta;
using store::ParamState;
using store::Source;

bool IsWeightsOnly(const Source& s) {
  return s.kind() == store::SourceKind::kSafetensors || s.kind() == store::SourceKind::kTorchWeights ||
         s.kind() == store::SourceKind::kHdf5;
}

// Max |a[i] - b[i]| over the elements, as doubles; NaN in exactly one side counts as infinity.
double MaxAbsDiff(DType da, const Buffer& a, DType db, const Buffer& b, int64_t numel) {
  const size_t ea = DTypeSize(da), eb = DTypeSize(db);
  double max = 0;
  for (int64_t i = 0; i < numel; ++i) {
    const double x = ElementAsDouble(da, a.data() + i * ea);
    const double y = ElementAsDouble(db, b.data() + i * eb);
    if (std::isnan(x) || std::isnan(y)) {
      if (std::isnan(x) != std::isnan(y)) return INFINITY;
      continue;
    }
    const double d = std::fabs(x - y);
    if (d > max || std::isnan(d)) max = d;
  }
  return max;
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

nlohmann::json DiffReport::ToJson() const {
  nlohmann::json out;
  out["equal"] = equal();
  out["params_compared"] = params_compared;
  out["states_compared"] = states_compared;
  out["entries"] = nlohmann::json::array();
  for (const DiffEntry& e : entries) {
    nlohmann::json j = {{"name", e.name}, {"state", e.state}, {"status", DiffStatusName(e.status)}};
    if (e.status == DiffStatus::kWithinTolerance || e.status == DiffStatus::kDifferent) j["max_abs_diff"] = e.max_abs_diff;
    if (!e.detail.empty()) j["detail"] = e.detail;
    out["entries"].push_back(std::move(j));
  }
  return out;
}

absl::StatusOr<DiffReport> DiffSources(const Source& a, const Source& b, const DiffOptions& options) {
  DiffReport report;
  const bool weights_only = IsWeightsOnly(a) || IsWeightsOnly(b);
  for (const ParamMeta& pa : a.params()) {
    const ParamMeta* pb = b.Find(pa.name);
    if (pb == nullptr) {
      report.entries.push_back({pa.name, "", DiffStatus::kMissingInB, 0, ""});
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
          report.entries.push_back({pa.name, std::string(store::ParamStateName(state)),
                                    pa.has_state(state) ? DiffStatus::kMissingInB : DiffStatus::kMissingInA, 0, ""});
        }
        continue;
      }
      ++report.states_compared;
      UCP_ASSIGN_OR_RETURN(Buffer ba, a.StateBytes(pa, state));
      UCP_ASSIGN_OR_RETURN(Buffer bb, b.StateBytes(*pb, state));
      const DType da = pa.state(state)->dtype, db = pb->state(state)->dtype;
      DiffEntry e{pa.name, std::string(store::ParamStateName(state)), DiffStatus::kEqual, 0, ""};
      if (da == db && ba.size() == bb.size() && std::memcmp(ba.data(), bb.data(), ba.size()) == 0) {
        report.entries.push_back(std::move(e));
        continue;
      }
      UCP_ASSIGN_OR_RETURN(int64_t numel, pa.shape.NumElements());
      e.max_abs_diff = MaxAbsDiff(da, ba, db, bb, numel);
      if (da != db) e.detail = absl::StrCat(DTypeName(da), " vs ", DTypeName(db));
      e.status = e.max_abs_diff <= options.atol ? DiffStatus::kWithinTolerance : DiffStatus::kDifferent;
      report.entries.push_back(std::move(e));
    }
    if (options.compare_steps && pa.step && pb->step && *pa.step != *pb->step) {
      report.entries.push_back({pa.name, "step", DiffStatus::kStepDiffers, std::fabs(*pa.step - *pb->step),
                                absl::StrCat(*pa.step, " vs ", *pb->step)});
    }
  }
  for (const ParamMeta& pb : b.params()) {
    if (a.Find(pb.name) == nullptr) report.entries.push_back({pb.name, "", DiffStatus::kMissingInA, 0, ""});
  }
  return report;
}

}  // namespace ucp::converters::sources
