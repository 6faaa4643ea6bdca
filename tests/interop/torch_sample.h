// A value tree with every kind the torch writer supports (tests/interop/test_torch_interop.py
// holds the Python values it must load as).
#pragma once

#include "formats/torch/pickle_value.h"

namespace ucp::formats::torch {

const Value* BuildSampleTree(ValueArena& arena);

}  // namespace ucp::formats::torch
