// RankGroup on real sockets of 127.0.0.1, with a hand-driven peer: what rank 0 does with a port
// scanner, a rank of another protocol version, and a joined rank that sends damaged frames.
#include "converters/execute/rank_group.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "converters/launch/launcher.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::converters::execute {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kKey = 0xfeedf00d;

int FreePort() {
  return ::ucp::converters::launch::FreeLocalPort();
}  // converters/launch/launcher.h

launch::RankEnv Env(int rank, int world) {
  launch::RankEnv env;
  env.rank = rank;
  env.world_size = world;
  env.master_addr = "127.0.0.1";
  return env;
}

// A hand-driven peer: connects (retrying while rank 0 starts listening) and sends raw bytes.
class RawPeer {
 public:
  explicit RawPeer(int port) {
    for (int i = 0; i < 500 && fd_ < 0; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<uint16_t>(port));
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
        fd_ = fd;
      } else {
        ::close(fd);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  }
  ~RawPeer() { Close(); }
  bool connected() const { return fd_ >= 0; }
  void Send(const std::string& bytes) {
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // Every frame rank 0 sent until it closed the connection (or 5 s passed).
  std::vector<Frame> ReadUntilClosed() {
    FrameReader reader("rank 0");
    std::vector<Frame> frames;
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buffer[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      reader.Append(absl::string_view(buffer, static_cast<size_t>(n)));
      for (;;) {
        absl::StatusOr<std::optional<Frame>> next = reader.Next();
        if (!next.ok() || !*next) break;
        frames.push_back(std::move(**next));
      }
    }
    return frames;
  }

 private:
  int fd_ = -1;
};

std::future<absl::StatusOr<std::unique_ptr<RankGroup>>> JoinAsync(int rank, int world, int port) {
  return std::async(std::launch::async, [=] {
    return RankGroup::Join(Env(rank, world), port, kKey, absl::Seconds(20), absl::Seconds(20));
  });
}

TEST(RankGroupJoin, AScannerIsDroppedAndTheRankStillJoins) {
  const int port = FreePort();
  auto zero = JoinAsync(0, 2, port);
  {
    RawPeer scanner(port);
    ASSERT_TRUE(scanner.connected());
    scanner.Send("GET / HTTP/1.0\r\n\r\n");
  }
  {
    RawPeer silent(port);  // connects and leaves without a byte
    ASSERT_TRUE(silent.connected());
  }
  auto one = JoinAsync(1, 2, port);
  absl::StatusOr<std::unique_ptr<RankGroup>> g0 = zero.get();
  absl::StatusOr<std::unique_ptr<RankGroup>> g1 = one.get();
  ASSERT_TRUE(g0.ok()) << g0.status();
  ASSERT_TRUE(g1.ok()) << g1.status();
  ASSERT_TRUE((*g1)->Send(0, std::string("re\0port", 7)).ok());
  absl::StatusOr<std::string> got = (*g0)->Receive(1);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, std::string("re\0port", 7));
}

TEST(RankGroupJoin, ARankOfAnotherProtocolVersionIsNamed) {
  const int port = FreePort();
  auto zero = JoinAsync(0, 2, port);
  RawPeer old(port);
  ASSERT_TRUE(old.connected());
  std::string payload(16, '\0');  // version 1: rank 1, world 2, key
  payload[0] = 1;
  payload[4] = 2;
  old.Send(EncodeFrame(MessageType::kHello, payload));
  absl::StatusOr<std::unique_ptr<RankGroup>> g0 = zero.get();
  ASSERT_FALSE(g0.ok());
  EXPECT_EQ(g0.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(g0.status().message(), HasSubstr("a rank at 127.0.0.1:"));
  EXPECT_THAT(g0.status().message(), HasSubstr("speaks coordination protocol version 1"));
  const std::vector<Frame> told = old.ReadUntilClosed();  // the peer is told why
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0].type, MessageType::kFailed);
  EXPECT_EQ(told[0].payload, g0.status().message());
}

TEST(RankGroupJoin, AnAbsurdHelloLengthIsRefusedUnread) {
  const int port = FreePort();
  auto zero = JoinAsync(0, 2, port);
  RawPeer peer(port);
  ASSERT_TRUE(peer.connected());
  std::string frame = EncodeFrame(MessageType::kHello, "");
  for (int i = 8; i < 16; ++i) frame[i] = '\xff';  // length 2^64 - 1
  peer.Send(frame);
  absl::StatusOr<std::unique_ptr<RankGroup>> g0 = zero.get();
  ASSERT_FALSE(g0.ok());
  EXPECT_THAT(g0.status().message(), HasSubstr("sent a hello of 18446744073709551615 bytes"));
}

TEST(RankGroupJoin, WorldSizeRankAndKeyMismatchesNameTheRank) {
  struct Case {
    int rank, world;
    uint64_t key;
    std::string expected;
  };
  for (const Case& c :
       {Case{1, 3, kKey, "rank 1 (127.0.0.1:"}, Case{2, 2, kKey, "rank 2 (127.0.0.1:"},
        Case{-5, 2, kKey, "rank -5 (127.0.0.1:"},
        Case{1, 2, kKey + 1, "computed another plan than rank 0"}}) {
    const int port = FreePort();
    auto zero = JoinAsync(0, 2, port);
    RawPeer peer(port);
    ASSERT_TRUE(peer.connected());
    peer.Send(EncodeHello(c.rank, c.world, c.key));
    absl::StatusOr<std::unique_ptr<RankGroup>> g0 = zero.get();
    ASSERT_FALSE(g0.ok()) << c.expected;
    EXPECT_THAT(g0.status().message(), HasSubstr(c.expected));
  }
}

// After the join, rank 0 reads whatever a rank sends: a bad frame ends the run naming the rank.
class JoinedPeer : public ::testing::Test {
 protected:
  void SetUp() override {
    const int port = FreePort();
    auto zero = JoinAsync(0, 2, port);
    peer_ = std::make_unique<RawPeer>(port);
    ASSERT_TRUE(peer_->connected());
    peer_->Send(EncodeHello(1, 2, kKey));
    absl::StatusOr<std::unique_ptr<RankGroup>> g0 = zero.get();
    ASSERT_TRUE(g0.ok()) << g0.status();
    group_ = std::move(*g0);
  }
  // What Receive(1) ends with once the group failed.
  std::string Failure() {
    absl::StatusOr<std::string> got = group_->Receive(1);
    EXPECT_FALSE(got.ok());
    EXPECT_TRUE(group_->failed());
    return std::string(got.status().message());
  }
  std::unique_ptr<RawPeer> peer_;
  std::unique_ptr<RankGroup> group_;
};

TEST_F(JoinedPeer, GarbageIsNamed) {
  peer_->Send(std::string(16, 'x'));
  EXPECT_THAT(Failure(), HasSubstr("rank 1 sent bytes that are not a ucp frame"));
}

TEST_F(JoinedPeer, AnOversizedLengthIsNamed) {
  peer_->Send(EncodeFrame(MessageType::kData, "").substr(0, 8) + std::string(8, '\x7f'));
  EXPECT_THAT(Failure(), HasSubstr("rank 1 announced a message of 9187201950435737471 bytes"));
}

TEST_F(JoinedPeer, ASecondHelloIsNamed) {
  peer_->Send(EncodeHello(1, 2, kKey));
  EXPECT_THAT(Failure(), HasSubstr("rank 1 sent a second hello"));
}

TEST_F(JoinedPeer, AFailureTextMustNameItsSender) {
  peer_->Send(EncodeFrame(MessageType::kFailed, "rank 0: it was \x1b[31mrank 0"));
  EXPECT_EQ(Failure(), "rank 1: rank 0: it was ?[31mrank 0");
}

TEST_F(JoinedPeer, ATruncatedFrameThenCloseIsADeadRank) {
  peer_->Send(EncodeFrame(MessageType::kData, "abcdef").substr(0, 20));
  peer_->Close();
  EXPECT_THAT(Failure(), HasSubstr("rank 1 died (connection closed)"));
}

}  // namespace
}  // namespace ucp::converters::execute
