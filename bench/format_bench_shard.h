// The file torch_format_benchmark reads and writes: a DeepSpeed ZeRO-2 fp32 optimizer shard
// (rank 0 of 4, 50 param groups, 1.30 GB) as a value tree with its bytes in memory, built with
// ValueArena (see torch_format_benchmark.cc's header for what it holds and why).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "formats/torch/pickle_value.h"

namespace ucp::bench {

// ---- The shard's plan: param groups and rank 0's flat partition of each (§3.2, §3.3). -------

struct Param {
  std::string name;
  int64_t numel;
};

struct Group {
  std::string name;
  double lr;
  double weight_decay;
  std::vector<Param> params;
  // Filled by Partition().
  int64_t partition = 0;  // partition_size, elements
  int64_t padding = 0;    // padding inside this rank's partition
};

// The 50 groups (embedding; per layer decay and no-decay; final norm), partitioned.
std::vector<Group> PlanGroups();

struct Shard {
  std::shared_ptr<formats::torch::ValueArena> arena;
  const formats::torch::Value* root = nullptr;
};

// The tree with its bytes in memory (1.3 GB), built on first use.
const Shard& InMemoryShard();

}  // namespace ucp::bench
