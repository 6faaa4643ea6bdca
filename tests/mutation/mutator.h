// Mutator: deterministic damage to real files for the mutation test. Mutant #i of a Mutator is a
// pure function of (seed, i), so any failure is reproduced by its index alone.
//
// Kinds (chosen per mutant): bit flips, random bytes, truncation, a splice of two seed files,
// zeroed ranges, inserted and deleted bytes, a copied range, and targeted kinds that aim at each
// seed's hot ranges (zip central directory and data.pkl, the safetensors JSON header, HDF5
// metadata): bit flips, "interesting" little-endian integers (0, -1, 2^31, 2^63, ...) and, in
// text, digits changed or inserted (so JSON numbers grow huge or negative).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ucp::testing {

struct MutationSeed {
  std::string name;
  std::string bytes;
  // [begin, end) byte ranges targeted mutations aim at; the whole file when empty.
  std::vector<std::pair<uint64_t, uint64_t>> hot;
};

struct Mutant {
  std::string bytes;
  std::string description;  // "#17 splice(fp32.pt[0:311) + step.pt[402:738))"
};

class Mutator {
 public:
  Mutator(std::vector<MutationSeed> seeds, uint64_t seed) : seeds_(std::move(seeds)), seed_(seed) {}

  Mutant Make(int64_t index) const;
  const std::vector<MutationSeed>& seeds() const { return seeds_; }

 private:
  std::vector<MutationSeed> seeds_;
  uint64_t seed_;
};

}  // namespace ucp::testing
