#include "runtime/data/token_data.h"

#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "formats/base/byte_source.h"
#include "formats/base/checked_math.h"
#include "formats/base/status.h"

namespace ucp::runtime {
namespace {

// Tokens are decoded with memcpy from the file's little-endian bytes.
static_assert(std::endian::native == std::endian::little, "token readers assume little-endian");

// The dtype codes of MMapIndexedDataset (§10.2); flat files use kUint16 / kUint32.
enum class ItemType : uint8_t {
  kUint8 = 1,
  kInt8 = 2,
  kInt16 = 3,
  kInt32 = 4,
  kInt64 = 5,
  kUint16 = 6,
  kUint32 = 7,
  kUint64 = 8,
};

std::optional<ItemType> ItemTypeFromCode(uint8_t code) {
  if (code < 1 || code > 8) return std::nullopt;
  return static_cast<ItemType>(code);
}

uint64_t ItemSize(ItemType type) {
  switch (type) {
    case ItemType::kUint8: return 1;
    case ItemType::kInt8: return 1;
    case ItemType::kInt16: return 2;
    case ItemType::kUint16: return 2;
    case ItemType::kInt32: return 4;
    case ItemType::kUint32: return 4;
    case ItemType::kInt64: return 8;
    case ItemType::kUint64: return 8;
  }
  return 0;
}

const char* ItemName(ItemType type) {
  switch (type) {
    case ItemType::kUint8: return "uint8";
    case ItemType::kInt8: return "int8";
    case ItemType::kInt16: return "int16";
    case ItemType::kUint16: return "uint16";
    case ItemType::kInt32: return "int32";
    case ItemType::kUint32: return "uint32";
    case ItemType::kInt64: return "int64";
    case ItemType::kUint64: return "uint64";
  }
  return "?";
}

template <typename T>
T LoadAt(const std::byte* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

template <typename T>
void Widen(const std::byte* src, absl::Span<int64_t> out) {
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<int64_t>(LoadAt<T>(src + i * sizeof(T)));
  }
}

// Decodes out.size() items of `type` at `src`; `first` (the token offset of src) names a uint64
// token that does not fit int64.
absl::Status Decode(ItemType type, const std::byte* src, int64_t first, absl::Span<int64_t> out,
                    const std::string& what) {
  switch (type) {
    case ItemType::kUint8: Widen<uint8_t>(src, out); break;
    case ItemType::kInt8: Widen<int8_t>(src, out); break;
    case ItemType::kInt16: Widen<int16_t>(src, out); break;
    case ItemType::kUint16: Widen<uint16_t>(src, out); break;
    case ItemType::kInt32: Widen<int32_t>(src, out); break;
    case ItemType::kUint32: Widen<uint32_t>(src, out); break;
    case ItemType::kInt64: Widen<int64_t>(src, out); break;
    case ItemType::kUint64:
      for (size_t i = 0; i < out.size(); ++i) {
        const uint64_t v = LoadAt<uint64_t>(src + i * 8);
        if (v > static_cast<uint64_t>(INT64_MAX)) {
          return absl::DataLossError(absl::StrCat(what, ": token ", v, " at offset ",
                                                  first + static_cast<int64_t>(i),
                                                  " does not fit int64"));
        }
        out[i] = static_cast<int64_t>(v);
      }
      break;
  }
  return absl::OkStatus();
}

// A flat array of `type` items: the whole of a nanoGPT file, or an indexed dataset's .bin (its
// sequences back to back, which is the stream Megatron's GPT sample builder reads).
class FileTokens final : public TokenData {
 public:
  FileTokens(std::shared_ptr<ByteSource> source, ItemType type, int64_t num_tokens,
             std::string description)
      : TokenData(num_tokens, std::move(description)),
        source_(std::move(source)),
        map_(source_->Map()),
        type_(type) {}

 private:
  absl::Status ReadChecked(int64_t offset, absl::Span<int64_t> out) const override {
    const uint64_t item = ItemSize(type_);
    if (map_.has_value()) {
      return Decode(type_, map_->data() + static_cast<uint64_t>(offset) * item, offset, out,
                    description());
    }
    // Not mapped: pread in bounded chunks.
    constexpr size_t kChunkItems = 8192;
    std::vector<std::byte> chunk(kChunkItems * item);
    for (size_t done = 0; done < out.size();) {
      const size_t n = std::min(kChunkItems, out.size() - done);
      const int64_t at = offset + static_cast<int64_t>(done);
      UCP_RETURN_IF_ERROR(source_->ReadAt(static_cast<uint64_t>(at) * item,
                                          absl::MakeSpan(chunk.data(), n * item)));
      UCP_RETURN_IF_ERROR(Decode(type_, chunk.data(), at, out.subspan(done, n), description()));
      done += n;
    }
    return absl::OkStatus();
  }

  std::shared_ptr<ByteSource> source_;
  std::optional<Buffer> map_;
  ItemType type_;
};

class VectorTokens final : public TokenData {
 public:
  VectorTokens(std::vector<int64_t> tokens, std::string description)
      : TokenData(static_cast<int64_t>(tokens.size()), std::move(description)),
        tokens_(std::move(tokens)) {}

 private:
  absl::Status ReadChecked(int64_t offset, absl::Span<int64_t> out) const override {
    std::copy_n(tokens_.begin() + offset, out.size(), out.begin());
    return absl::OkStatus();
  }

  std::vector<int64_t> tokens_;
};

// Sequential little-endian reads of a validated-size .idx buffer; every read is bounds-checked
// and a short file names the field it stopped in.
class IdxCursor {
 public:
  IdxCursor(absl::Span<const std::byte> bytes, const std::string& path)
      : bytes_(bytes), path_(path) {}

  absl::Status Need(uint64_t length, absl::string_view field) const {
    if (!RangeInside(pos_, length, bytes_.size())) {
      return absl::DataLossError(absl::StrCat(path_, ": truncated in ", field, " (at byte ", pos_,
                                              ", needs ", length, ", file has ", bytes_.size(),
                                              ")"));
    }
    return absl::OkStatus();
  }
  template <typename T>
  absl::StatusOr<T> Take(absl::string_view field) {
    UCP_RETURN_IF_ERROR(Need(sizeof(T), field));
    const T value = LoadAt<T>(bytes_.data() + pos_);
    pos_ += sizeof(T);
    return value;
  }
  // The start of `count` items of `size` bytes (checked present), and moves past them.
  const std::byte* TakeArray(uint64_t count, uint64_t size) {
    const std::byte* p = bytes_.data() + pos_;
    pos_ += count * size;
    return p;
  }
  uint64_t pos() const { return pos_; }

 private:
  absl::Span<const std::byte> bytes_;
  const std::string& path_;
  uint64_t pos_ = 0;
};

constexpr absl::string_view kMagic("MMIDIDX\0\0", 9);
constexpr absl::string_view kOldMagic("TNTIDX\0\0", 8);

struct IdxInfo {
  ItemType type;
  uint64_t num_sequences;
  uint64_t num_doc_entries;
  uint64_t total_bytes;  // what the .bin must hold
};

// Parses and validates every field of an .idx (§10.2) against itself and the .bin size.
absl::StatusOr<IdxInfo> ParseIdx(absl::Span<const std::byte> bytes, const std::string& path,
                                 uint64_t bin_size, const std::string& bin_path) {
  const absl::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (text.substr(0, kOldMagic.size()) == kOldMagic) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the old TNTIDX (cached/lazy IndexedDataset) format is not supported;",
                     " convert it to the MMIDIDX (mmap) format"));
  }
  IdxCursor cur(bytes, path);
  UCP_RETURN_IF_ERROR(cur.Need(kMagic.size(), "magic"));
  if (text.substr(0, kMagic.size()) != kMagic) {
    return absl::DataLossError(
        absl::StrCat(path, ": magic is not MMIDIDX\\x00\\x00 (not an mmap indexed dataset index)"));
  }
  cur.TakeArray(kMagic.size(), 1);
  UCP_ASSIGN_OR_RETURN(const uint64_t version, cur.Take<uint64_t>("version"));
  if (version != 1) {
    return absl::DataLossError(absl::StrCat(path, ": version ", version, " (only 1 is known)"));
  }
  UCP_ASSIGN_OR_RETURN(const uint8_t code, cur.Take<uint8_t>("dtype code"));
  const std::optional<ItemType> type = ItemTypeFromCode(code);
  if (!type.has_value()) {
    return absl::DataLossError(
        absl::StrCat(path, ": dtype code ", code, " is not one of 1-8 (uint8 ... uint64)"));
  }
  UCP_ASSIGN_OR_RETURN(const uint64_t n, cur.Take<uint64_t>("number of sequences"));
  UCP_ASSIGN_OR_RETURN(const uint64_t d, cur.Take<uint64_t>("number of document-index entries"));

  // 4·N + 8·N + 8·D must be exactly the rest of the file.
  const std::optional<uint64_t> seq_bytes = CheckedMul(n, uint64_t{12});
  const std::optional<uint64_t> doc_bytes = CheckedMul(d, uint64_t{8});
  const std::optional<uint64_t> body =
      seq_bytes && doc_bytes ? CheckedAdd(*seq_bytes, *doc_bytes) : std::nullopt;
  const uint64_t rest = bytes.size() - cur.pos();
  if (!body.has_value() || *body != rest) {
    return absl::DataLossError(
        absl::StrCat(path, ": number of sequences ", n, " and number of document-index entries ", d,
                     " need 12*N + 8*D bytes after the header, the file has ", rest));
  }
  const std::byte* lengths = cur.TakeArray(n, 4);
  const std::byte* offsets = cur.TakeArray(n, 8);
  const std::byte* docs = cur.TakeArray(d, 8);

  const uint64_t item = ItemSize(*type);
  uint64_t expected = 0;  // exclusive scan of length × item size, in bytes
  for (uint64_t i = 0; i < n; ++i) {
    const int32_t length = LoadAt<int32_t>(lengths + i * 4);
    if (length < 0) {
      return absl::DataLossError(
          absl::StrCat(path, ": sequence_lengths[", i, "] = ", length, " is negative"));
    }
    const int64_t offset = LoadAt<int64_t>(offsets + i * 8);
    if (offset < 0 || static_cast<uint64_t>(offset) != expected) {
      return absl::DataLossError(absl::StrCat(path, ": sequence_offsets[", i, "] = ", offset,
                                              ", the lengths before it give ", expected));
    }
    // length < 2^31 and item <= 8, so the product cannot overflow; the sum can.
    const std::optional<uint64_t> next = CheckedAdd(expected, static_cast<uint64_t>(length) * item);
    if (!next.has_value() || *next > static_cast<uint64_t>(INT64_MAX)) {
      return absl::DataLossError(
          absl::StrCat(path, ": sequence_lengths overflow int64 bytes at sequence ", i));
    }
    expected = *next;
  }
  if (d == 0) {
    return absl::DataLossError(absl::StrCat(path, ": document index is empty (needs 0 ... N)"));
  }
  int64_t previous = 0;
  for (uint64_t i = 0; i < d; ++i) {
    const int64_t doc = LoadAt<int64_t>(docs + i * 8);
    if ((i == 0 && doc != 0) || doc < previous || (doc >= 0 && static_cast<uint64_t>(doc) > n)) {
      return absl::DataLossError(absl::StrCat(
          path, ": document_index[", i, "] = ", doc,
          i == 0 ? " (must be 0)" : absl::StrCat(" (must be in [", previous, ", ", n, "])")));
    }
    previous = doc;
  }
  if (static_cast<uint64_t>(previous) != n) {
    return absl::DataLossError(absl::StrCat(path, ": document_index ends at ", previous,
                                            ", not at the number of sequences ", n));
  }
  if (bin_size != expected) {
    return absl::DataLossError(
        absl::StrCat(bin_path, ": ", bin_size, " bytes, the index ", path, " gives ", expected));
  }
  return IdxInfo{*type, n, d, expected};
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::StatusOr<std::unique_ptr<TokenData>> OpenIndexed(const std::string& prefix,
                                                       const TokenDataOptions& options) {
  const std::string idx_path = prefix + ".idx";
  const std::string bin_path = prefix + ".bin";
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<ByteSource> idx, OpenFileSource(idx_path));
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<ByteSource> bin, OpenFileSource(bin_path, options.map));
  UCP_ASSIGN_OR_RETURN(const Buffer idx_bytes, idx->ReadBuffer(0, idx->Size()));
  UCP_ASSIGN_OR_RETURN(const IdxInfo info,
                       ParseIdx(idx_bytes.span(), idx_path, bin->Size(), bin_path));
  if (!options.dtype.empty() && options.dtype != ItemName(info.type)) {
    return UsageError(absl::StrCat(idx_path, ": the index says ", ItemName(info.type),
                                   " tokens, the options say ", options.dtype));
  }
  const int64_t tokens = static_cast<int64_t>(info.total_bytes / ItemSize(info.type));
  if (tokens == 0) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, ": indexed dataset holds no tokens"));
  }
  std::string description = absl::StrCat(
      "indexed dataset ", ItemName(info.type), " tokens ", prefix, " (", info.num_sequences,
      " sequences, ", info.num_doc_entries - 1, " documents, ", tokens, " tokens)");
  return std::make_unique<FileTokens>(std::move(bin), info.type, tokens, std::move(description));
}

absl::StatusOr<std::unique_ptr<TokenData>> OpenFlat(const std::string& path,
                                                    const TokenDataOptions& options) {
  ItemType type;
  if (options.dtype.empty() || options.dtype == "uint16") {
    type = ItemType::kUint16;
  } else if (options.dtype == "uint32") {
    type = ItemType::kUint32;
  } else {
    return UsageError(absl::StrCat("token dtype \"", options.dtype,
                                   "\": a nanoGPT token file is uint16 or uint32"));
  }
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<ByteSource> source, OpenFileSource(path, options.map));
  const uint64_t size = source->Size();
  const uint64_t item = ItemSize(type);
  if (size == 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": empty token file"));
  }
  if (size % item != 0) {
    return absl::DataLossError(absl::StrCat(path, ": ", size, " bytes is not a multiple of the ",
                                            ItemName(type), " size ", item, " (wrong dtype?)"));
  }
  const int64_t tokens = static_cast<int64_t>(size / item);
  std::string description =
      absl::StrCat("nanoGPT ", ItemName(type), " tokens ", path, " (", tokens, " tokens)");
  return std::make_unique<FileTokens>(std::move(source), type, tokens, std::move(description));
}

}  // namespace

absl::Status TokenData::Read(int64_t offset, absl::Span<int64_t> out) const {
  const auto length = static_cast<int64_t>(out.size());
  if (offset < 0 || offset > num_tokens_ || length > num_tokens_ - offset) {
    return absl::OutOfRangeError(absl::StrCat("tokens [", offset, ", ", offset, "+", length,
                                              ") are outside ", description_));
  }
  if (length == 0) return absl::OkStatus();
  return ReadChecked(offset, out);
}

absl::StatusOr<std::unique_ptr<TokenData>> OpenTokenData(const std::string& path,
                                                         const TokenDataOptions& options) {
  const absl::string_view view(path);
  if (absl::EndsWith(view, ".idx")) {
    return OpenIndexed(std::string(view.substr(0, view.size() - 4)), options);
  }
  if (absl::EndsWith(view, ".bin")) {
    const std::string prefix(view.substr(0, view.size() - 4));
    if (Exists(prefix + ".idx")) return OpenIndexed(prefix, options);
  }
  if (!Exists(path) && Exists(path + ".idx")) return OpenIndexed(path, options);
  return OpenFlat(path, options);
}

std::unique_ptr<TokenData> TokenDataFromVector(std::vector<int64_t> tokens,
                                               const std::string& name) {
  std::string description = absl::StrCat("tokens ", name, " (", tokens.size(), " tokens)");
  return std::make_unique<VectorTokens>(std::move(tokens), std::move(description));
}

}  // namespace ucp::runtime
