// The weights sinks of `ucp export` / `ucp zero-to-fp32` (docs/export.md): the export tensor list
// (export_tensors.h) laid out as files, from metadata alone.
//   WeightsSink: safetensors (model.safetensors) or torch .bin (pytorch_model.bin) files whose
//     payloads are CopyOps from the Source; with max_shard_size, greedy shards in key order as
//     Hugging Face's split_torch_state_dict_into_shards, names "<stem>-00001-of-0000N<ext>", and
//     "<stem><ext>.index.json". Plan::info.notes says when everything fits one shard (no index),
//     Plan::info.warnings names every tensor larger than max_shard_size (a shard of its own).
//   Hdf5Sink: model.h5, one FileWriter that writes tensor by tensor through libhdf5 (one tensor
//     in memory at a time).
// Metadata (safetensors __metadata__, HDF5 root attributes) records the source kind, step and
// topology, except for zero_to_fp32 output ({"format": "pt"} only, as zero_to_fp32.py).
#pragma once

#include "converters/sinks/export_tensors.h"
#include "converters/sinks/sink.h"
#include "ucp/source.h"

namespace ucp::converters::sinks {

class WeightsSink final : public Sink<ucp::Source> {
 public:
  explicit WeightsSink(WeightsTarget target) : target_(std::move(target)) {}
  absl::string_view name() const override;
  absl::StatusOr<plan::Plan> Plan(const ucp::Source& source) const override;

 private:
  WeightsTarget target_;
};

class Hdf5Sink final : public Sink<ucp::Source> {
 public:
  explicit Hdf5Sink(WeightsTarget target) : target_(std::move(target)) {}
  absl::string_view name() const override { return "hdf5"; }
  absl::StatusOr<plan::Plan> Plan(const ucp::Source& source) const override;

 private:
  WeightsTarget target_;
};

}  // namespace ucp::converters::sinks
