// Replacement global operator new / delete (a separate translation unit, so no call site ever
// sees both malloc and a replaced delete inlined together).
#include "tests/hostile/allocation_tracker.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace ucp::testing {
namespace {

std::atomic<size_t> largest{0};

void Record(size_t size) {
  size_t seen = largest.load(std::memory_order_relaxed);
  while (size > seen && !largest.compare_exchange_weak(seen, size, std::memory_order_relaxed)) {
  }
}

}  // namespace

void ResetLargestAllocation() { largest.store(0); }
size_t LargestAllocation() { return largest.load(); }

}  // namespace ucp::testing

void* operator new(std::size_t size) {
  ucp::testing::Record(size);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return ::operator new(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  ucp::testing::Record(size);
  return std::malloc(size == 0 ? 1 : size);
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept {
  return ::operator new(size, tag);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
