// A lossless JSON rendering of a value tree, used by `ucp inspect --json` and the torch interop
// tests (docs/formats/torch.md lists the encoding):
//   None → null, bool → true/false, int → number, big int → {"bigint": "<LE two's complement
//   hex>"}, float → number ({"float": "nan"|"inf"|"-inf"} when not finite), str → string, bytes →
//   {"bytes": "<hex>"}, tuple → {"tuple": [...]}, list → [...], dict → {"dict": [[k, v], ...]},
//   OrderedDict → {"odict": [[k, v], ...], "state": ...}, set → {"set": [...]}, frozenset →
//   {"frozenset": [...]}, global → {"global": "module.name"}, object → {"object": "module.name",
//   "new": bool, "args": [...], "state": ...}, storage → {"storage": {...}}, tensor → {"tensor":
//   {"dtype", "shape", "stride", "offset", "storage", "requires_grad", ...}}.
#pragma once

#include <functional>

#include "formats/torch/pickle_value.h"
#include "nlohmann/json.hpp"

namespace ucp::formats::torch {

// `on_tensor` may add fields to each tensor's object (e.g. a data offset in a side file).
nlohmann::json ValueToJson(
    const Value& v,
    const std::function<void(const TensorRef&, nlohmann::json&)>& on_tensor = nullptr);

}  // namespace ucp::formats::torch
