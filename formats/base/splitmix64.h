// SplitMix64: a counter-based 64-bit mixer (Steele, Lea, Flood 2014), for deterministic streams
// that any process can compute for any index (the runtime's sampler, the mutation tests).
#pragma once

#include <cstdint>

namespace ucp {

inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace ucp
