// RunCuda without UCP_BUILD_CUDA: every entry point says so, so callers can fall back to Run.
#include "kernels/adamw/fused_adamw.h"
#include "kernels/grouped_gemm/grouped_gemm.h"
#include "kernels/permute/permute.h"
#include "kernels/router/router_topk.h"

namespace ucp::kernels {
namespace {
absl::Status NoCuda() {
  return absl::UnimplementedError("ucp built without CUDA kernels (UCP_BUILD_CUDA=OFF)");
}
}  // namespace

absl::Status RunCuda(const GroupedGemmParams&, void*) { return NoCuda(); }
absl::Status RunCuda(const PermuteIndicesParams&, void*) { return NoCuda(); }
absl::Status RunCuda(const PermuteRowsParams&, void*) { return NoCuda(); }
absl::Status RunCuda(const UnpermuteRowsParams&, void*) { return NoCuda(); }
absl::Status RunCuda(const RouterTopKParams&, void*) { return NoCuda(); }
absl::Status RunCuda(const FusedAdamWParams&, void*) { return NoCuda(); }

}  // namespace ucp::kernels
