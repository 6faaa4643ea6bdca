// Weights in Hugging Face's mixture-of-experts layout for a model with DeepSpeed's AutoEP names
// (deepspeed-runtime.md §1.2-1.3), as AutoEP's replacement reads them: `--weights` /
// `--load-module-only` of a Hugging Face MoE checkpoint. Per MoE block `<p>.mlp`:
//   router.gate.weight        <- gate.weight                       (Mixtral v4: block_sparse_moe.)
//   experts.w1 / w3 [E, I, H] <- experts.gate_up_proj [E, 2I, H] rows 0:I / I:2I (or [E, H, 2I],
//                                transposed), or experts.{j}.gate_proj / up_proj.weight (w1 / w3)
//   experts.w2 [E, H, I]      <- experts.down_proj [E, H, I] (or [E, I, H]), or
//                                experts.{j}.down_proj.weight (w2)
//   shared_experts.*          <- shared_expert.* (Qwen), shared_experts_gate <- shared_expert_gate
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/model.h"
#include "ucp/source.h"

namespace ucp::runtime {

// How one model parameter is assembled from Hugging Face tensors of a Source.
struct HfMoeRead {
  enum class Op : uint8_t { kSame, kFirstHalf, kSecondHalf, kStack };
  Op op = Op::kSame;
  bool transpose = false;  // the source is hidden-first ([E, H, 2I] / [E, I, H])
  std::vector<const ucp::ParamMeta*> parts;
};

// The Hugging Face source of a model parameter the Source lacks under its own name, checked
// against the parameter's (global) shape; nullopt when there is none.
std::optional<HfMoeRead> FindHfMoeSource(const ucp::Source& src, const ModelParam& mp);

// The whole fp32 tensor (global shape) from `read`, which reads one Source tensor as fp32.
absl::StatusOr<at::Tensor> ReadHfMoe(
    const HfMoeRead& r,
    const std::function<absl::StatusOr<at::Tensor>(const ucp::ParamMeta&)>& read);

}  // namespace ucp::runtime
