#include "tests/mutation/mutator.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "formats/base/splitmix64.h"

namespace ucp::testing {
namespace {

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  // Uniform in [0, n); 0 when n == 0.
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : engine_() % n; }
  // Uniform in [lo, hi].
  uint64_t Between(uint64_t lo, uint64_t hi) { return lo + Below(hi - lo + 1); }
  bool OneIn(uint64_t n) { return Below(n) == 0; }
  char Byte() { return static_cast<char>(engine_() & 0xFF); }

 private:
  std::mt19937_64 engine_;
};

// Values that sit on the edges parsers check: signs, widths, limits, alignment.
constexpr uint64_t kInteresting[] = {0,
                                     1,
                                     2,
                                     8,
                                     64,
                                     0x7F,
                                     0x80,
                                     0xFF,
                                     0x100,
                                     0x7FFF,
                                     0x8000,
                                     0xFFFF,
                                     0x10000,
                                     0x7FFFFFFF,
                                     0x80000000,
                                     0xFFFFFFFF,
                                     0x100000000,
                                     uint64_t{1} << 40,
                                     uint64_t{1} << 50,
                                     0x7FFFFFFFFFFFFFFF,
                                     0x8000000000000000,
                                     ~uint64_t{0},
                                     ~uint64_t{0} - 1};

enum class Kind {
  kFlipBits,
  kRandomBytes,
  kTruncate,
  kSplice,
  kZeroRange,
  kInsertBytes,
  kDeleteRange,
  kCopyRange,
  kHotFlip,
  kHotInteresting,
  kHotDigits,
};
// Targeted kinds get twice the weight of the others.
constexpr Kind kKinds[] = {Kind::kFlipBits,    Kind::kRandomBytes,    Kind::kTruncate,
                           Kind::kSplice,      Kind::kZeroRange,      Kind::kInsertBytes,
                           Kind::kDeleteRange, Kind::kCopyRange,      Kind::kHotFlip,
                           Kind::kHotFlip,     Kind::kHotInteresting, Kind::kHotInteresting,
                           Kind::kHotDigits,   Kind::kHotDigits};

class Mutation {
 public:
  Mutation(const std::vector<MutationSeed>& seeds, const MutationSeed& base, Rng& rng)
      : seeds_(seeds), base_(base), rng_(rng), bytes_(base.bytes) {}

  void Apply(Kind kind) {
    if (!description_.empty()) description_ += "; ";
    switch (kind) {
      case Kind::kFlipBits: return FlipBits(Anywhere(), "flip");
      case Kind::kRandomBytes: return RandomBytes();
      case Kind::kTruncate: return Truncate();
      case Kind::kSplice: return Splice();
      case Kind::kZeroRange: return ZeroRange();
      case Kind::kInsertBytes: return InsertBytes();
      case Kind::kDeleteRange: return DeleteRange();
      case Kind::kCopyRange: return CopyRange();
      case Kind::kHotFlip: return FlipBits(Hot(), "hot-flip");
      case Kind::kHotInteresting: return HotInteresting();
      case Kind::kHotDigits: return HotDigits();
    }
  }

  std::string& bytes() { return bytes_; }
  const std::string& description() const { return description_; }

 private:
  uint64_t size() const { return bytes_.size(); }
  uint64_t Anywhere() { return rng_.Below(size()); }
  // A position inside one of the base seed's hot ranges (clipped to the current size).
  uint64_t Hot() {
    if (base_.hot.empty() || size() == 0) return Anywhere();
    const auto& [begin, end] = base_.hot[rng_.Below(base_.hot.size())];
    const uint64_t clipped_end = std::min<uint64_t>(end, size());
    if (begin >= clipped_end) return Anywhere();
    return rng_.Between(begin, clipped_end - 1);
  }

  void FlipBits(uint64_t first, const char* label) {
    if (size() == 0) return;
    const uint64_t n = rng_.Between(1, 4);
    absl::StrAppend(&description_, label);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t pos = std::min(first + rng_.Below(8), size() - 1);
      const int bit = static_cast<int>(rng_.Below(8));
      bytes_[pos] = static_cast<char>(bytes_[pos] ^ (1 << bit));
      absl::StrAppend(&description_, i == 0 ? " " : ",", pos, ".", bit);
    }
  }

  void RandomBytes() {
    if (size() == 0) return;
    const uint64_t pos = Anywhere();
    const uint64_t n = std::min<uint64_t>(rng_.Between(1, 16), size() - pos);
    for (uint64_t i = 0; i < n; ++i) bytes_[pos + i] = rng_.Byte();
    absl::StrAppend(&description_, "random[", pos, ":", pos + n, ")");
  }

  void Truncate() {
    const uint64_t n = rng_.Below(size());
    bytes_.resize(n);
    absl::StrAppend(&description_, "truncate to ", n);
  }

  void Splice() {
    const MutationSeed& other = seeds_[rng_.Below(seeds_.size())];
    const uint64_t cut = rng_.Between(0, size());
    const uint64_t from = rng_.Between(0, other.bytes.size());
    bytes_ = bytes_.substr(0, cut) + other.bytes.substr(from);
    absl::StrAppend(&description_, "splice(this[0:", cut, ") + ", other.name, "[", from, ":])");
  }

  void ZeroRange() {
    if (size() == 0) return;
    const uint64_t pos = Anywhere();
    const uint64_t n = std::min<uint64_t>(rng_.Between(1, 256), size() - pos);
    std::fill_n(bytes_.begin() + pos, n, '\0');
    absl::StrAppend(&description_, "zero[", pos, ":", pos + n, ")");
  }

  void InsertBytes() {
    const uint64_t pos = rng_.Between(0, size());
    std::string inserted(rng_.Between(1, 16), '\0');
    for (char& c : inserted) c = rng_.Byte();
    bytes_.insert(pos, inserted);
    absl::StrAppend(&description_, "insert ", inserted.size(), " at ", pos);
  }

  void DeleteRange() {
    if (size() == 0) return;
    const uint64_t pos = Anywhere();
    const uint64_t n = std::min<uint64_t>(rng_.Between(1, 64), size() - pos);
    bytes_.erase(pos, n);
    absl::StrAppend(&description_, "delete[", pos, ":", pos + n, ")");
  }

  void CopyRange() {
    if (size() == 0) return;
    const uint64_t from = Anywhere();
    const uint64_t to = Anywhere();
    const uint64_t n = std::min({rng_.Between(1, 128), size() - from, size() - to});
    bytes_.replace(to, n, bytes_.substr(from, n));
    absl::StrAppend(&description_, "copy[", from, ":", from + n, ") to ", to);
  }

  void HotInteresting() {
    if (size() == 0) return;
    const uint64_t width = uint64_t{1} << rng_.Below(4);  // 1, 2, 4 or 8 bytes
    const uint64_t pos = std::min(Hot(), size() - std::min(size(), width));
    const uint64_t value = kInteresting[rng_.Below(std::size(kInteresting))];
    const uint64_t n = std::min(width, size() - pos);
    for (uint64_t i = 0; i < n; ++i) bytes_[pos + i] = static_cast<char>((value >> (8 * i)) & 0xFF);
    absl::StrAppend(&description_, "hot-int ", value, " (", width, " bytes) at ", pos);
  }

  // Changes a digit, or inserts digits or a sign after it, in the text at or after a hot position.
  void HotDigits() {
    const uint64_t start = Hot();
    uint64_t pos = start;
    while (pos < size() && pos < start + 64 && (bytes_[pos] < '0' || bytes_[pos] > '9')) ++pos;
    if (pos >= size() || pos >= start + 64) return FlipBits(start, "hot-flip (no digit)");
    switch (rng_.Below(3)) {
      case 0:
        bytes_[pos] = static_cast<char>('0' + rng_.Below(10));
        absl::StrAppend(&description_, "digit at ", pos, " := ", std::string(1, bytes_[pos]));
        return;
      case 1: {
        std::string digits(rng_.Between(1, 20), '9');
        for (char& c : digits) c = static_cast<char>('0' + rng_.Below(10));
        bytes_.insert(pos, digits);
        absl::StrAppend(&description_, "insert digits ", digits, " at ", pos);
        return;
      }
      default:
        bytes_.insert(pos, rng_.OneIn(2) ? "-" : ".");
        absl::StrAppend(&description_, "insert sign/point at ", pos);
        return;
    }
  }

  const std::vector<MutationSeed>& seeds_;
  const MutationSeed& base_;
  Rng& rng_;
  std::string bytes_;
  std::string description_;
};

}  // namespace

Mutant Mutator::Make(int64_t index) const {
  Rng rng(SplitMix64(seed_ ^ SplitMix64(static_cast<uint64_t>(index))));
  const MutationSeed& base = seeds_[rng.Below(seeds_.size())];
  Mutation mutation(seeds_, base, rng);
  const int steps = rng.OneIn(4) ? 2 : 1;  // sometimes stack two
  for (int i = 0; i < steps; ++i) mutation.Apply(kKinds[rng.Below(std::size(kKinds))]);
  return Mutant{std::move(mutation.bytes()),
                absl::StrCat("#", index, " ", base.name, ": ", mutation.description())};
}

}  // namespace ucp::testing
