#include "converters/execute/dist_wire.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace ucp::converters::execute {
namespace {

void PutLE(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetLE(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

bool KnownType(uint32_t type) {
  return type >= static_cast<uint32_t>(MessageType::kHello) &&
         type <= static_cast<uint32_t>(MessageType::kData);
}

}  // namespace

std::string EncodeFrame(MessageType type, absl::string_view payload) {
  std::string out;
  out.reserve(kFrameHeaderBytes + payload.size());
  PutLE(&out, kWireMagic, 4);
  PutLE(&out, static_cast<uint32_t>(type), 4);
  PutLE(&out, payload.size(), 8);
  out.append(payload.data(), payload.size());
  return out;
}

FrameHeader ParseFrameHeader(const char* bytes) {
  return {static_cast<uint32_t>(GetLE(bytes, 4)), static_cast<uint32_t>(GetLE(bytes + 4, 4)),
          GetLE(bytes + 8, 8)};
}

std::string EncodeHello(int rank, int world, uint64_t key) {
  std::string payload;
  PutLE(&payload, kWireVersion, 4);
  PutLE(&payload, static_cast<uint32_t>(rank), 4);
  PutLE(&payload, static_cast<uint32_t>(world), 4);
  PutLE(&payload, key, 8);
  return EncodeFrame(MessageType::kHello, payload);
}

absl::StatusOr<Hello> DecodeHello(absl::string_view payload, absl::string_view peer) {
  if (payload.size() < 4) {
    return absl::DataLossError(
        absl::StrCat(peer, " sent a hello of ", payload.size(), " bytes, not ", kHelloBytes));
  }
  Hello hello;
  hello.version = static_cast<uint32_t>(GetLE(payload.data(), 4));
  if (hello.version != kWireVersion) {
    return absl::InvalidArgumentError(absl::StrCat(peer, " speaks coordination protocol version ",
                                                   hello.version, ", this ucp version ",
                                                   kWireVersion, " (the same ucp on every rank?)"));
  }
  if (payload.size() != kHelloBytes) {
    return absl::DataLossError(
        absl::StrCat(peer, " sent a hello of ", payload.size(), " bytes, not ", kHelloBytes));
  }
  hello.rank = static_cast<int32_t>(static_cast<uint32_t>(GetLE(payload.data() + 4, 4)));
  hello.world = static_cast<int32_t>(static_cast<uint32_t>(GetLE(payload.data() + 8, 4)));
  hello.key = GetLE(payload.data() + 12, 8);
  return hello;
}

void FrameReader::Append(absl::string_view bytes) {
  if (!error_.ok()) return;
  // Drop what was returned before growing, so that a long stream of small frames stays small.
  if (consumed_ > 0 && consumed_ >= buffer_.size() / 2) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  buffer_.append(bytes.data(), bytes.size());
}

absl::StatusOr<std::optional<Frame>> FrameReader::Next() {
  if (!error_.ok()) return error_;
  if (buffered() < kFrameHeaderBytes) return std::nullopt;
  const auto [magic, type, length] = ParseFrameHeader(buffer_.data() + consumed_);
  if (magic != kWireMagic) {
    error_ =
        absl::DataLossError(absl::StrCat(peer_, " sent bytes that are not a ucp frame (magic 0x",
                                         absl::Hex(magic, absl::kZeroPad8), ")"));
  } else if (!KnownType(type)) {
    error_ = absl::DataLossError(absl::StrCat(peer_, " sent a frame of unknown type ", type));
  } else if (length > max_payload_) {
    error_ = absl::DataLossError(absl::StrCat(peer_, " announced a message of ", length,
                                              " bytes (at most ", max_payload_, ")"));
  }
  if (!error_.ok()) return error_;
  if (buffered() - kFrameHeaderBytes < length) return std::nullopt;
  Frame frame;
  frame.type = static_cast<MessageType>(type);
  frame.payload = buffer_.substr(consumed_ + kFrameHeaderBytes, length);
  consumed_ += kFrameHeaderBytes + length;
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  }
  return frame;
}

std::string FailureText(absl::string_view payload, int sender) {
  std::string text;
  const size_t n = std::min(payload.size(), kMaxFailureBytes);
  text.reserve(n + 16);
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(payload[i]);
    text.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
  }
  if (payload.size() > n) text += " [...]";
  if (text.empty()) text = "(empty)";
  if (sender < 0) return text;
  const std::string name = absl::StrCat("rank ", sender);
  const bool names_sender = absl::StartsWith(text, name) && text.size() > name.size() &&
                            (text[name.size()] == ':' || text[name.size()] == ' ');
  return names_sender ? text : absl::StrCat(name, ": ", text);
}

}  // namespace ucp::converters::execute
