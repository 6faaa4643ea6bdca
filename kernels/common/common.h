// Shared vocabulary of kernels/ (layer K): storage dtypes, bf16 conversion and the host/device
// qualifier. Kernels take POD params with raw pointers; nothing here includes torch, formats/ or
// CUDA headers, so the CPU references build anywhere.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define UCP_HD __host__ __device__ __forceinline__
#else
#define UCP_HD inline
#endif

namespace ucp::kernels {

// Storage type of activations and weights; kernels always accumulate in fp32.
enum class ElemType : uint8_t { kF32, kBF16 };

inline int ElemBytes(ElemType t) { return t == ElemType::kF32 ? 4 : 2; }

// bf16 <-> fp32 as torch does it: widen by shifting, narrow with round-to-nearest-even, NaN kept
// quiet (c10::BFloat16's round_to_nearest_even).
UCP_HD float Bf16ToFloat(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}
UCP_HD uint16_t FloatToBf16(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

UCP_HD float LoadElem(const void* base, int64_t i, ElemType t) {
  return t == ElemType::kF32 ? static_cast<const float*>(base)[i]
                             : Bf16ToFloat(static_cast<const uint16_t*>(base)[i]);
}
UCP_HD void StoreElem(void* base, int64_t i, ElemType t, float v) {
  if (t == ElemType::kF32) {
    static_cast<float*>(base)[i] = v;
  } else {
    static_cast<uint16_t*>(base)[i] = FloatToBf16(v);
  }
}

}  // namespace ucp::kernels
