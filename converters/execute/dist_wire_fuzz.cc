// libFuzzer target for the coordination's decoders (dist_wire.h): the input is what a peer sends
// after its connection opened. Byte 0 picks how the stream is cut into appends (1..256 bytes, as
// recv may return it); every frame is then decoded as its type says. Any input must end in a
// Status naming the peer; accepted frames must have the shapes the decoders promise.
#include <cstddef>
#include <cstdint>

#include "absl/strings/match.h"
#include "converters/execute/dist_share.h"
#include "converters/execute/dist_wire.h"
#include "formats/base/status.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ucp::converters::execute;  // NOLINT: a fuzz driver
  if (size == 0) return 0;
  const size_t step = size_t{data[0]} + 1;
  const char* bytes = reinterpret_cast<const char*>(data);
  RankWork work;
  work.batches = {{Segment{}, Segment{}}, {Segment{}}};
  work.written_files = {0};
  FrameReader reader("rank 1", uint64_t{1} << 20);
  for (size_t at = 1; at < size; at += step) {
    reader.Append(absl::string_view(bytes + at, std::min(step, size - at)));
    for (;;) {
      absl::StatusOr<std::optional<Frame>> next = reader.Next();
      if (!next.ok()) {
        UCP_CHECK(absl::IsDataLoss(next.status()));
        UCP_CHECK(absl::StartsWith(next.status().message(), "rank 1 "));
        return 0;
      }
      if (!*next) break;
      const Frame& frame = **next;
      UCP_CHECK(frame.payload.size() <= (uint64_t{1} << 20));
      if (frame.type == MessageType::kHello) {
        absl::StatusOr<Hello> hello = DecodeHello(frame.payload, "rank 1");
        UCP_CHECK(hello.ok() == (frame.payload.size() == kHelloBytes &&
                                 frame.payload.substr(0, 4) == std::string("\2\0\0\0", 4)));
      } else if (frame.type == MessageType::kData) {
        absl::StatusOr<RankReport> report = DecodeReport(frame.payload, work, 1);
        UCP_CHECK(report.ok() == (frame.payload.size() == 24));
        if (report.ok()) {
          UCP_CHECK(report->crcs.size() == 3 && report->written.size() == 1);
        }
      } else if (frame.type == MessageType::kFailed) {
        const std::string text = FailureText(frame.payload, 1);
        UCP_CHECK(text.size() <= kMaxFailureBytes + 16);
        UCP_CHECK(absl::StartsWith(text, "rank 1"));
        for (char c : text) UCP_CHECK(c >= 0x20 && c < 0x7f);
      }
    }
    UCP_CHECK(reader.buffered() <= size);
  }
  return 0;
}
