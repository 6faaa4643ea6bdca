// Records the largest single C++ allocation (operator new, every form but the aligned ones) made
// by the program it is linked into, so a test can check that no allocation was sized from a
// file's claims. Linking allocation_tracker.cc replaces the global operator new / delete.
#pragma once

#include <cstddef>

namespace ucp::testing {

// Forgets what was recorded so far.
void ResetLargestAllocation();
// The largest request since the last reset, in bytes.
size_t LargestAllocation();

}  // namespace ucp::testing
