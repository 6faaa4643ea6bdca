#include "converters/sources/expert_layouts.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "formats/deepspeed/expert_names.h"

namespace ucp::converters::sources {
namespace {

using ucp::ParamMeta;
using ucp::ParamState;
using ucp::Source;

// Appends rows [row_begin, row_begin + rows) of `t` (viewed as [n, row_bytes]) to `out`.
absl::Status AppendRows(const Buffer& t, uint64_t row_bytes, uint64_t row_begin, uint64_t rows,
                        std::vector<std::byte>* out) {
  if ((row_begin + rows) * row_bytes > t.size())
    return absl::InvalidArgumentError("export tensor too small");
  out->insert(out->end(), t.data() + row_begin * row_bytes,
              t.data() + (row_begin + rows) * row_bytes);
  return absl::OkStatus();
}

}  // namespace

std::map<std::string, int> NativeLocalExperts(const Source& stacked) {
  std::map<std::string, int> out;
  for (const ParamMeta& p : stacked.params()) {
    if (!p.expert) continue;
    if (auto native = formats::deepspeed::ParseNativeExpertName(p.name)) {
      out[native->prefix] = std::max(out[native->prefix], native->id + 1);
    }
  }
  return out;
}

absl::StatusOr<std::optional<AssembledExpert>> AssembleExpert(
    const Source& weights, const ParamMeta& expert, const std::map<std::string, int>& native_local,
    bool read) {
  const Shape& shape = expert.shape;
  if (!expert.expert || shape.rank() < 2) return std::nullopt;
  const int64_t rows = shape.dim(0);
  std::vector<int64_t> row_dims(shape.dims().begin() + 1, shape.dims().end());
  const int64_t row_numel = Shape(row_dims).NumElements().value_or(0);
  AssembledExpert out;
  std::vector<std::byte> bytes;
  auto take = [&](const std::string& name, const Shape& want) -> absl::StatusOr<Buffer> {
    const ParamMeta* p = weights.Find(name);
    if (p == nullptr || !p->has_state(ParamState::kFp32)) return absl::NotFoundError(name);
    if (!(p->shape == want)) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": shape ", p->shape.ToString(),
                                                     ", expected ", want.ToString(), " for '",
                                                     expert.name, "'"));
    }
    out.dtype = p->state(ParamState::kFp32)->dtype;
    out.names.push_back(name);
    if (!read) return Buffer();
    return weights.StateBytes(*p, ParamState::kFp32);
  };

  if (auto native = formats::deepspeed::ParseNativeExpertName(expert.name)) {
    auto it = native_local.find(native->prefix);
    if (it == native_local.end()) return std::nullopt;
    for (int64_t r = 0; r < rows; ++r) {
      absl::StatusOr<Buffer> t =
          take(formats::deepspeed::NativeExpertParamName(native->prefix,
                                                         r * it->second + native->id, native->rest),
               Shape(row_dims));
      if (absl::IsNotFound(t.status())) return std::nullopt;
      UCP_RETURN_IF_ERROR(t.status());
      bytes.insert(bytes.end(), t->data(), t->data() + t->size());
    }
  } else {
    std::string base, leaf;
    if (!formats::deepspeed::ParseAutoepExpertName(expert.name, &base, &leaf) || shape.rank() != 3)
      return std::nullopt;
    // One tensor per expert: <base>.<i>.<leaf>.
    if (weights.Find(absl::StrCat(base, ".0.", leaf)) != nullptr) {
      for (int64_t i = 0; i < rows; ++i) {
        UCP_ASSIGN_OR_RETURN(Buffer t,
                             take(absl::StrCat(base, ".", i, ".", leaf), Shape(row_dims)));
        bytes.insert(bytes.end(), t.data(), t.data() + t.size());
      }
    } else if (leaf == "w2") {  // down_proj is w2 as it is
      absl::StatusOr<Buffer> t = take(base + ".down_proj", shape);
      if (absl::IsNotFound(t.status())) return std::nullopt;
      UCP_RETURN_IF_ERROR(t.status());
      bytes.assign(t->data(), t->data() + t->size());
    } else {  // gate_up_proj [E, 2I, H]: per expert, w1's rows then w3's
      absl::StatusOr<Buffer> t =
          take(base + ".gate_up_proj", Shape({rows, 2 * shape.dim(1), shape.dim(2)}));
      if (absl::IsNotFound(t.status())) return std::nullopt;
      UCP_RETURN_IF_ERROR(t.status());
      const uint64_t half = static_cast<uint64_t>(row_numel) * DTypeSize(out.dtype);
      for (int64_t i = 0; read && i < rows; ++i) {
        UCP_RETURN_IF_ERROR(
            AppendRows(*t, half, static_cast<uint64_t>(2 * i + (leaf == "w3" ? 1 : 0)), 1, &bytes));
      }
    }
  }
  out.bytes = Buffer::FromVector(std::move(bytes));
  return out;
}

}  // namespace ucp::converters::sources
