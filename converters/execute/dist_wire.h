// The bytes of the ranks' coordination (rank_group.h), apart from the sockets, so that every
// decoder of what a peer sends is unit-tested (dist_wire_test.cc), mutation-tested
// (tests/mutation/dist_mutation_test.cc) and fuzzed (dist_wire_fuzz.cc). What arrives on the
// port is untrusted: a port scanner, another program, a rank of another ucp build or a damaged
// peer. Every length is checked before anything is buffered, every error names the peer.
//
// Wire format (every integer little-endian): a frame is
//     magic u32 'UCPD' | type u32 | length u64 | payload[length]
// The first frame on a connection is kHello {version u32, rank u32, world u32, key u64}; the
// version comes first so that a rank of another ucp is named as such whatever else changed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ucp::converters::execute {

inline constexpr uint32_t kWireMagic = 0x44504355;  // "UCPD"
// 1: the hello without a version (rank, world, key); 2: the version first.
inline constexpr uint32_t kWireVersion = 2;
inline constexpr size_t kFrameHeaderBytes = 16;
inline constexpr size_t kHelloBytes = 20;
inline constexpr uint64_t kMaxMessageBytes = uint64_t{1} << 30;
// A peer's failure text is printed on every rank's terminal: bounded and printable.
inline constexpr size_t kMaxFailureBytes = 4096;

enum class MessageType : uint32_t {
  kHello = 1,
  kHeartbeat = 2,
  kFailed = 3,  // payload: the error text
  kData = 4,    // payload: the caller's bytes
};

struct Frame {
  MessageType type = MessageType::kData;
  std::string payload;
};

std::string EncodeFrame(MessageType type, absl::string_view payload);

// The three fields of a frame header (kFrameHeaderBytes bytes), unchecked.
struct FrameHeader {
  uint32_t magic = 0;
  uint32_t type = 0;
  uint64_t length = 0;
};
FrameHeader ParseFrameHeader(const char* bytes);

struct Hello {
  uint32_t version = kWireVersion;
  int rank = 0;
  int world = 1;
  uint64_t key = 0;
};
// The whole kHello frame of this build.
std::string EncodeHello(int rank, int world, uint64_t key);
// A kHello payload from `peer` (an address, "127.0.0.1:4711"). InvalidArgument for another
// version (naming both), DataLoss for a payload of another size. Rank and world are not checked
// against a world here (RankGroup::Join does, naming the rank).
absl::StatusOr<Hello> DecodeHello(absl::string_view payload, absl::string_view peer);

// Cuts frames out of a byte stream. Append what recv returned, then call Next until it returns
// nullopt (more bytes needed). A header is checked as soon as its 16 bytes are in, before its
// payload is buffered: DataLoss naming the peer for another magic, an unknown type or a length
// above `max_payload`; the reader then stays failed (the connection is not ours to read on).
class FrameReader {
 public:
  explicit FrameReader(std::string peer, uint64_t max_payload = kMaxMessageBytes)
      : peer_(std::move(peer)), max_payload_(max_payload) {}

  void Append(absl::string_view bytes);
  absl::StatusOr<std::optional<Frame>> Next();
  // Bytes held that are not yet a whole frame.
  size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  std::string peer_;
  uint64_t max_payload_;
  std::string buffer_;
  size_t consumed_ = 0;  // bytes of buffer_ already returned as frames
  absl::Status error_;
};

// The text of a kFailed payload as it may be shown: at most kMaxFailureBytes, every byte that
// is not printable ASCII replaced by '?', "(empty)" for nothing. When `sender` >= 0 the text must
// name it: "rank <sender>: " is put in front unless the text already starts with "rank <sender>"
// followed by ':' or ' ' (a rank may not blame another for its own failure).
std::string FailureText(absl::string_view payload, int sender);

}  // namespace ucp::converters::execute
