// Expert tensors across layouts, for comparing a checkpoint with its weights export (`ucp diff`):
// a ZeRO folder or UCP stores an expert weight stacked (AutoEP `<p>.experts.w1|w2|w3` [E, ...];
// native MoE `<p>.deepspeed_experts.<local>.<rest>` [ep, ...], one row per EP rank), while
// `ucp export` writes Hugging Face's fused `<p>.experts.gate_up_proj` / `down_proj`, one tensor per
// expert (`<p>.experts.<i>.w1`), or native experts per global id (docs/export.md).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "formats/base/buffer.h"
#include "formats/base/dtype.h"
#include "ucp/source.h"

namespace ucp::converters::sources {

struct AssembledExpert {
  DType dtype = DType::kF32;
  Buffer bytes;                    // the stacked tensor, row-major, `dtype`
  std::vector<std::string> names;  // the export's tensors it was made of
};

// Native MoE layer prefix -> local experts per EP rank, from a stacked source's parameter names.
std::map<std::string, int> NativeLocalExperts(const ucp::Source& stacked);

// `expert` (a stacked expert parameter of another source) assembled from `weights`' tensors in one
// of the export layouts; nullopt when `weights` has none of them for it. With `read` false only
// `names` and `dtype` are filled (nothing is read). Errors: a reader's, or InvalidArgument when the
// export's tensors do not fit the expected shape.
absl::StatusOr<std::optional<AssembledExpert>> AssembleExpert(
    const ucp::Source& weights, const ucp::ParamMeta& expert,
    const std::map<std::string, int>& native_local, bool read = true);

}  // namespace ucp::converters::sources
