// Sink: the writer side of the pipeline (docs/architecture.md "One pipeline shape"). A sink is
// built with its target (topology, format, options) and, given its input, plans the output files
// from metadata alone: no tensor byte is read and nothing is written. RunPlan
// (converters/execute/run_plan.h) then writes the plan, the same way for every sink.
//
//   sink              input                          output
//   UcpFolderSink     deepspeed::CheckpointIndex     a UCP folder in DeepSpeed's layout
//   ZeroFolderSink    ZeroSinkInput                  a ZeRO tag folder at a target topology
//   WeightsSink       ucp::Source                  safetensors or torch .bin shards (+ index)
//   Hdf5Sink          ucp::Source                  one HDF5 file (written by a FileWriter)
//
// The input type is a template parameter because the sinks read different things: the UCP sink
// the ZeRO index, the ZeRO sink the non-tensor trees DeepSpeed writes, the weights sinks any
// Source. Sinks of one input type are interchangeable (export picks one by --format).
#pragma once

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "converters/plan/plan.h"

namespace ucp::converters::sinks {

template <typename Input>
class Sink {
 public:
  virtual ~Sink() = default;
  // "ucp", "zero", "safetensors", "bin", "hdf5": for messages and --json.
  virtual absl::string_view name() const = 0;
  // The files to write, relative to the output folder; the plan's first sources are the input's
  // files (in the input's order), then bytes computed here. Errors name the input file and key.
  virtual absl::StatusOr<plan::Plan> Plan(const Input& input) const = 0;
};

}  // namespace ucp::converters::sinks
