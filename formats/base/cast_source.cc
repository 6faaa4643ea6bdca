#include "formats/base/cast_source.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"

namespace ucp {
namespace {

uint16_t FloatToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7FFF + ((x >> 16) & 1)) >> 16);  // round to nearest even
}

uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000, a = x & 0x7FFFFFFF;
  if (a >= 0x7F800000) return static_cast<uint16_t>(sign | (a > 0x7F800000 ? 0x7E00 : 0x7C00));
  if (a >= 0x477FF000) return static_cast<uint16_t>(sign | 0x7C00);  // >= 65520 rounds to inf
  if (a < 0x38800000) {                                              // half subnormal or zero
    float v;
    std::memcpy(&v, &a, 4);
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(v * 16777216.0f)));
  }
  uint32_t h = ((((a >> 23) - 127 + 15) << 10) | ((a & 0x7FFFFF) >> 13));
  const uint32_t rem = a & 0x1FFF;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return static_cast<uint16_t>(sign | h);
}

class CastSource final : public ByteSource {
 public:
  CastSource(std::vector<CastInputRun> runs, DType from, DType to, int64_t numel, std::string name)
      : runs_(std::move(runs)), from_(from), to_(to), numel_(numel), name_(std::move(name)) {}

  uint64_t Size() const override { return static_cast<uint64_t>(numel_) * DTypeSize(to_); }
  const std::string& name() const override { return name_; }

  absl::Status ReadAt(uint64_t offset, absl::Span<std::byte> out) const override {
    if (offset > Size() || out.size() > Size() - offset) {
      return absl::OutOfRangeError(
          absl::StrCat(name_, ": read of ", out.size(), " bytes at ", offset, " past ", Size()));
    }
    const uint64_t eout = DTypeSize(to_), ein = DTypeSize(from_);
    // Whole output elements covering the request, in bounded chunks.
    constexpr uint64_t kChunkElements = 1 << 18;
    const uint64_t first = offset / eout, last = (offset + out.size() + eout - 1) / eout;
    std::vector<std::byte> in, cast;
    for (uint64_t e = first; e < last; e += kChunkElements) {
      const uint64_t n = std::min(kChunkElements, last - e);
      in.resize(n * ein);
      UCP_RETURN_IF_ERROR(ReadInput(e * ein, absl::MakeSpan(in)));
      cast.resize(n * eout);
      CastElements(from_, in.data(), to_, cast.data(), static_cast<int64_t>(n));
      // Copy the part of [e*eout, (e+n)*eout) that overlaps the request.
      const uint64_t lo = std::max(offset, e * eout),
                     hi = std::min(offset + out.size(), (e + n) * eout);
      std::memcpy(out.data() + (lo - offset), cast.data() + (lo - e * eout), hi - lo);
    }
    return absl::OkStatus();
  }

 private:
  absl::Status ReadInput(uint64_t offset, absl::Span<std::byte> out) const {
    uint64_t at = 0, done = 0;
    for (const CastInputRun& r : runs_) {
      if (done == out.size()) break;
      const uint64_t begin = std::max(at, offset + done);
      if (begin < at + r.size) {
        const uint64_t len = std::min(at + r.size - begin, out.size() - done);
        UCP_RETURN_IF_ERROR(r.source->ReadAt(r.offset + (begin - at), out.subspan(done, len)));
        // Streaming: the input is read once; keep the mapped pages out of the resident set.
        r.source->ReleaseRange(r.offset + (begin - at), len);
        done += len;
      }
      at += r.size;
    }
    if (done != out.size())
      return absl::InternalError(absl::StrCat(name_, ": input runs end early"));
    return absl::OkStatus();
  }

  std::vector<CastInputRun> runs_;
  DType from_, to_;
  int64_t numel_;
  std::string name_;
};

}  // namespace

bool IsCastableFloat(DType d) {
  return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16 || d == DType::kF64;
}

void CastElements(DType from, const std::byte* in, DType to, std::byte* out, int64_t n) {
  const size_t ein = DTypeSize(from), eout = DTypeSize(to);
  for (int64_t i = 0; i < n; ++i) {
    const float f = static_cast<float>(ElementAsDouble(from, in + i * ein));
    std::byte* o = out + i * eout;
    if (to == DType::kF32) {
      std::memcpy(o, &f, 4);
    } else if (to == DType::kBF16) {
      const uint16_t h = FloatToBf16(f);
      std::memcpy(o, &h, 2);
    } else {
      const uint16_t h = FloatToHalf(f);
      std::memcpy(o, &h, 2);
    }
  }
}

absl::StatusOr<std::shared_ptr<ByteSource>> CastingSource(std::vector<CastInputRun> runs,
                                                          DType from, DType to, int64_t numel,
                                                          std::string name) {
  if (!IsCastableFloat(from) || !(to == DType::kF32 || to == DType::kBF16 || to == DType::kF16) ||
      numel < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": no cast from ", DTypeName(from), " to ", DTypeName(to)));
  }
  uint64_t total = 0;
  for (const CastInputRun& r : runs) {
    if (r.source == nullptr)
      return absl::InvalidArgumentError(absl::StrCat(name, ": input run without a source"));
    total += r.size;
  }
  if (total != static_cast<uint64_t>(numel) * DTypeSize(from)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": input runs hold ", total, " bytes, ",
                                                   numel, " ", DTypeName(from), " elements need ",
                                                   static_cast<uint64_t>(numel) * DTypeSize(from)));
  }
  return std::make_shared<CastSource>(std::move(runs), from, to, numel, std::move(name));
}

}  // namespace ucp
