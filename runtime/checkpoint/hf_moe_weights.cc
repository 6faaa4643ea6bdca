#include "runtime/checkpoint/hf_moe_weights.h"

#include <ATen/ops/stack.h>

#include "formats/base/status.h"

namespace ucp::runtime {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<int64_t> Dims(const ucp::ParamMeta& p) {
  return std::vector<int64_t>(p.shape.dims().begin(), p.shape.dims().end());
}

// The MoE block's prefixes a Hugging Face file may use for `<layer>.mlp`.
std::vector<std::string> BlockPrefixes(const std::string& mlp) {
  std::vector<std::string> out = {mlp};
  const std::string suffix = ".mlp";
  if (EndsWith(mlp, suffix))
    out.push_back(mlp.substr(0, mlp.size() - suffix.size()) + ".block_sparse_moe");
  return out;
}

}  // namespace

std::optional<HfMoeRead> FindHfMoeSource(const ucp::Source& src, const ModelParam& mp) {
  const std::vector<int64_t> want = mp.global_shape();
  const std::string& n = mp.name;
  auto same = [&](const std::string& from) -> std::optional<HfMoeRead> {
    const ucp::ParamMeta* p = src.Find(from);
    if (p == nullptr || Dims(*p) != want) return std::nullopt;
    return HfMoeRead{HfMoeRead::Op::kSame, false, {p}};
  };
  const std::string router = ".mlp.router.gate.weight";
  if (EndsWith(n, router)) {
    const std::string layer = n.substr(0, n.size() - router.size());
    for (const std::string& b : BlockPrefixes(layer + ".mlp")) {
      if (auto r = same(b + ".gate.weight")) return r;
    }
    return std::nullopt;
  }
  for (const auto& [ours, theirs] :
       {std::pair{".mlp.shared_experts_gate.weight", ".mlp.shared_expert_gate.weight"},
        std::pair{".mlp.shared_experts.gate_proj.weight", ".mlp.shared_expert.gate_proj.weight"},
        std::pair{".mlp.shared_experts.up_proj.weight", ".mlp.shared_expert.up_proj.weight"},
        std::pair{".mlp.shared_experts.down_proj.weight", ".mlp.shared_expert.down_proj.weight"}}) {
    if (EndsWith(n, ours)) return same(n.substr(0, n.size() - std::string(ours).size()) + theirs);
  }
  if (!mp.expert() || want.size() != 3) return std::nullopt;
  const std::string w = n.substr(n.size() - 2);  // w1, w2, w3
  const std::string mlp = n.substr(0, n.size() - std::string(".experts.w1").size());
  const int64_t E = want[0], R = want[1], C = want[2];
  for (const std::string& b : BlockPrefixes(mlp)) {
    // Transformers 5 fused tensors.
    if (w == "w2") {
      if (const ucp::ParamMeta* p = src.Find(b + ".experts.down_proj")) {
        if (Dims(*p) == want) return HfMoeRead{HfMoeRead::Op::kSame, false, {p}};
        if (Dims(*p) == std::vector<int64_t>{E, C, R})
          return HfMoeRead{HfMoeRead::Op::kSame, true, {p}};
      }
    } else if (const ucp::ParamMeta* p = src.Find(b + ".experts.gate_up_proj")) {
      const HfMoeRead::Op half = w == "w1" ? HfMoeRead::Op::kFirstHalf : HfMoeRead::Op::kSecondHalf;
      if (Dims(*p) == std::vector<int64_t>{E, 2 * R, C}) return HfMoeRead{half, false, {p}};
      if (Dims(*p) == std::vector<int64_t>{E, C, 2 * R}) return HfMoeRead{half, true, {p}};
    }
    // One module per expert: gate_proj / up_proj / down_proj (Mixtral v4: w1 / w3 / w2).
    HfMoeRead stack{HfMoeRead::Op::kStack, false, {}};
    for (int64_t j = 0; j < E; ++j) {
      const std::string e = b + ".experts." + std::to_string(j) + ".";
      const char* hf = w == "w1" ? "gate_proj" : w == "w3" ? "up_proj" : "down_proj";
      const ucp::ParamMeta* p = src.Find(e + hf + ".weight");
      if (p == nullptr) p = src.Find(e + w + ".weight");
      if (p == nullptr || Dims(*p) != std::vector<int64_t>{R, C}) break;
      stack.parts.push_back(p);
    }
    if (static_cast<int64_t>(stack.parts.size()) == E) return stack;
  }
  return std::nullopt;
}

absl::StatusOr<at::Tensor> ReadHfMoe(
    const HfMoeRead& r,
    const std::function<absl::StatusOr<at::Tensor>(const ucp::ParamMeta&)>& read) {
  if (r.op == HfMoeRead::Op::kStack) {
    std::vector<at::Tensor> rows;
    for (const ucp::ParamMeta* p : r.parts) {
      UCP_ASSIGN_OR_RETURN(at::Tensor t, read(*p));
      rows.push_back(t);
    }
    return at::stack(rows, 0);
  }
  UCP_ASSIGN_OR_RETURN(at::Tensor t, read(*r.parts[0]));
  if (r.transpose) t = t.transpose(1, 2);
  if (r.op != HfMoeRead::Op::kSame) {
    const int64_t half = t.size(1) / 2;
    t = t.narrow(1, r.op == HfMoeRead::Op::kFirstHalf ? 0 : half, half);
  }
  return t.contiguous();
}

}  // namespace ucp::runtime
