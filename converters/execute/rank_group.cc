#include "converters/execute/rank_group.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"

namespace ucp::converters::execute {
namespace {

constexpr auto kHeartbeatEvery = std::chrono::seconds(1);
// How long rank 0 waits for the hello of one connection: a silent one (a port scanner) must not
// hold the others up for long.
constexpr absl::Duration kHelloWait = absl::Seconds(5);
// A hello longer than this is not read (ours is kHelloBytes).
constexpr uint64_t kMaxHelloBytes = 64;

absl::Status WriteAll(int fd, const std::string& bytes, const std::string& what) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoToStatus(errno, absl::StrCat("sending to ", what));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Reads exactly `n` bytes before `deadline` (handshake only; afterwards the loop reads).
absl::Status ReadExactly(int fd, char* out, size_t n, absl::Time deadline) {
  size_t done = 0;
  while (done < n) {
    const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (ms <= 0) return absl::UnavailableError("timed out");
    pollfd p{fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1000)));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) continue;
    ssize_t got = ::recv(fd, out + done, n - done, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return absl::UnavailableError("connection closed");
    done += static_cast<size_t>(got);
  }
  return absl::OkStatus();
}

void SetSocketOptions(int fd, absl::Duration send_timeout) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  timeval tv = absl::ToTimeval(send_timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

}  // namespace

struct RankGroup::Peer {
  Peer(int r, int f) : rank(r), fd(f), in(absl::StrCat("rank ", r)) {}
  int rank = -1;
  int fd = -1;
  std::mutex send_mu;
  FrameReader in;                // bytes received, not yet a whole frame
  std::deque<std::string> data;  // kData payloads not yet taken
  absl::Time last_heard = absl::Now();
  std::atomic<bool> closed{false};
};

struct RankGroup::State {
  mutable std::mutex mu;
  std::condition_variable cv;
  std::string failure;
  std::thread loop;
};

RankGroup::RankGroup(int rank, int world, absl::Duration peer_timeout)
    : rank_(rank), world_(world), peer_timeout_(peer_timeout), state_(std::make_unique<State>()) {
  peers_.resize(world);
}

RankGroup::~RankGroup() {
  stop_ = true;
  if (state_->loop.joinable()) state_->loop.join();
  for (auto& p : peers_) {
    if (p != nullptr && p->fd >= 0) ::close(p->fd);
  }
}

std::string RankGroup::failure() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->failure;
}

void RankGroup::MarkFailed(const std::string& message, bool forward) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (!state_->failure.empty()) return;
    state_->failure = message;
    failed_ = true;
  }
  state_->cv.notify_all();
  if (!forward) return;
  for (auto& p : peers_) {
    if (p != nullptr && !p->closed) SendFrame(*p, MessageType::kFailed, message).IgnoreError();
  }
}

void RankGroup::Fail(const std::string& message) {
  MarkFailed(absl::StrCat("rank ", rank_, ": ", message), true);
}

absl::Status RankGroup::SendFrame(Peer& peer, MessageType type, const std::string& payload) {
  std::lock_guard<std::mutex> lock(peer.send_mu);
  return WriteAll(peer.fd, EncodeFrame(type, payload), absl::StrCat("rank ", peer.rank));
}

absl::Status RankGroup::Send(int peer, const std::string& payload) {
  if (peer < 0 || peer >= world_ || peers_[peer] == nullptr) {
    return absl::InternalError(absl::StrCat("rank ", rank_, " has no connection to rank ", peer));
  }
  if (payload.size() > kMaxMessageBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a message of ", payload.size(), " bytes to rank ", peer));
  }
  return SendFrame(*peers_[peer], MessageType::kData, payload);
}

absl::StatusOr<std::string> RankGroup::Receive(int peer) {
  if (peer < 0 || peer >= world_ || peers_[peer] == nullptr) {
    return absl::InternalError(absl::StrCat("rank ", rank_, " has no connection to rank ", peer));
  }
  Peer& p = *peers_[peer];
  std::unique_lock<std::mutex> lock(state_->mu);
  state_->cv.wait(lock, [&] { return !p.data.empty() || failed_.load(); });
  if (!p.data.empty()) {
    std::string out = std::move(p.data.front());
    p.data.pop_front();
    return out;
  }
  return absl::AbortedError(state_->failure);
}

// Parses whole frames out of peer.in; a malformed frame kills the connection.
void RankGroup::ReadFrom(Peer& peer) {
  char buffer[1 << 16];
  ssize_t n = ::recv(peer.fd, buffer, sizeof(buffer), MSG_DONTWAIT);
  if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n <= 0) {
    peer.closed = true;
    MarkFailed(absl::StrCat("rank ", peer.rank, " died (connection closed)"), rank_ == 0);
    return;
  }
  peer.last_heard = absl::Now();
  peer.in.Append(absl::string_view(buffer, static_cast<size_t>(n)));
  for (;;) {
    absl::StatusOr<std::optional<Frame>> next = peer.in.Next();
    if (next.ok() && *next && (*next)->type == MessageType::kHello) {
      next = absl::DataLossError(absl::StrCat("rank ", peer.rank, " sent a second hello"));
    }
    if (!next.ok()) {
      peer.closed = true;
      MarkFailed(std::string(next.status().message()), rank_ == 0);
      return;
    }
    if (!*next) return;
    Frame& frame = **next;
    if (frame.type == MessageType::kData) {
      {
        std::lock_guard<std::mutex> lock(state_->mu);
        peer.data.push_back(std::move(frame.payload));
      }
      state_->cv.notify_all();
    } else if (frame.type == MessageType::kFailed) {
      // Rank 0's text names the rank that failed; another rank's must name itself.
      MarkFailed(FailureText(frame.payload, rank_ == 0 ? peer.rank : -1), rank_ == 0);
    }
  }
}

void RankGroup::Loop() {
  auto next_beat = std::chrono::steady_clock::now();
  while (!stop_) {
    if (std::chrono::steady_clock::now() >= next_beat) {
      for (auto& p : peers_) {
        if (p != nullptr && !p->closed) SendFrame(*p, MessageType::kHeartbeat, "").IgnoreError();
      }
      next_beat += kHeartbeatEvery;
    }
    std::vector<pollfd> fds;
    std::vector<Peer*> who;
    for (auto& p : peers_) {
      if (p == nullptr || p->closed) continue;
      fds.push_back({p->fd, POLLIN, 0});
      who.push_back(p.get());
    }
    if (fds.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    const int rc = ::poll(fds.data(), fds.size(), 100);
    if (rc < 0 && errno != EINTR) break;
    for (size_t i = 0; rc > 0 && i < fds.size(); ++i) {
      if (fds[i].revents != 0) ReadFrom(*who[i]);
    }
    for (Peer* p : who) {
      if (!p->closed && absl::Now() - p->last_heard > peer_timeout_) {
        p->closed = true;
        MarkFailed(absl::StrCat("rank ", p->rank, " is not answering (no message for ",
                                absl::FormatDuration(peer_timeout_), ")"),
                   rank_ == 0);
      }
    }
  }
}

namespace {

absl::StatusOr<int> Listen(int port) {
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool v6 = fd >= 0;
  if (!v6) fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoToStatus(errno, "creating the rank-0 socket");
  int one = 1, zero = 0;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  int rc;
  if (v6) {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(static_cast<uint16_t>(port));
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(static_cast<uint16_t>(port));
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  }
  if (rc != 0 || ::listen(fd, 1024) != 0) {
    absl::Status s = ErrnoToStatus(errno, absl::StrCat("rank 0 listening on port ", port));
    ::close(fd);
    return s;
  }
  return fd;
}

absl::StatusOr<int> Connect(const std::string& host, int port, absl::Time deadline) {
  std::string last = "no address";
  while (absl::Now() < deadline) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int gai = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
    if (gai != 0) {
      last = ::gai_strerror(gai);
    } else {
      for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
        int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
          ::freeaddrinfo(found);
          return fd;
        }
        last = std::strerror(errno);
        ::close(fd);
      }
      ::freeaddrinfo(found);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::UnavailableError(
      absl::StrCat("could not reach rank 0 at ", host, ":", port, " (", last, ")"));
}

std::string Address(const sockaddr_storage& a) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (a.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(a);
    ::inet_ntop(AF_INET6, &v6.sin6_addr, host, sizeof(host));
    port = ntohs(v6.sin6_port);
    if (std::strncmp(host, "::ffff:", 7) == 0) return absl::StrCat(host + 7, ":", port);
    return absl::StrCat("[", host, "]:", port);
  }
  if (a.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(a);
    ::inet_ntop(AF_INET, &v4.sin_addr, host, sizeof(host));
    port = ntohs(v4.sin_port);
  }
  return absl::StrCat(host, ":", port);
}

// The hello of a new connection. nullopt: not one of ours (another magic or frame type, silence,
// a closed connection): drop it. An error: one of ours that cannot join (another protocol
// version, a damaged hello), naming its address.
absl::StatusOr<std::optional<Hello>> ReadHello(int fd, const std::string& who,
                                               absl::Time deadline) {
  char header[kFrameHeaderBytes];
  if (!ReadExactly(fd, header, sizeof(header), deadline).ok()) return std::nullopt;
  const FrameHeader h = ParseFrameHeader(header);
  if (h.magic != kWireMagic || h.type != static_cast<uint32_t>(MessageType::kHello)) {
    return std::nullopt;
  }
  if (h.length > kMaxHelloBytes) {
    return absl::DataLossError(absl::StrCat("a rank at ", who, " sent a hello of ", h.length,
                                            " bytes (the same ucp on every rank?)"));
  }
  std::string payload(h.length, '\0');
  if (!ReadExactly(fd, payload.data(), payload.size(), deadline).ok()) return std::nullopt;
  UCP_ASSIGN_OR_RETURN(Hello hello, DecodeHello(payload, absl::StrCat("a rank at ", who)));
  return hello;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RankGroup>> RankGroup::Join(const launch::RankEnv& env, int port,
                                                           uint64_t key,
                                                           absl::Duration connect_timeout,
                                                           absl::Duration peer_timeout) {
  std::unique_ptr<RankGroup> group(new RankGroup(env.rank, env.world_size, peer_timeout));
  const absl::Time deadline = absl::Now() + connect_timeout;
  if (env.rank != 0) {
    UCP_ASSIGN_OR_RETURN(const int fd, Connect(env.master_addr, port, deadline));
    auto peer = std::make_unique<Peer>(0, fd);
    SetSocketOptions(fd, peer_timeout);
    UCP_RETURN_IF_ERROR(WriteAll(fd, EncodeHello(env.rank, env.world_size, key), "rank 0"));
    group->peers_[0] = std::move(peer);
  } else {
    UCP_ASSIGN_OR_RETURN(const int listener, Listen(port));
    int joined = 1;
    absl::Status error;
    while (joined < env.world_size && error.ok()) {
      const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (ms <= 0) {
        std::string missing;
        for (int r = 1; r < env.world_size; ++r) {
          if (group->peers_[r] == nullptr)
            absl::StrAppend(&missing, missing.empty() ? "" : ", ", r);
        }
        error = absl::UnavailableError(absl::StrCat("ranks ", missing, " did not join within ",
                                                    absl::FormatDuration(connect_timeout)));
        break;
      }
      pollfd p{listener, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1000))) <= 0) continue;
      sockaddr_storage from{};
      socklen_t from_size = sizeof(from);
      const int fd =
          ::accept4(listener, reinterpret_cast<sockaddr*>(&from), &from_size, SOCK_CLOEXEC);
      if (fd < 0) continue;
      const std::string who = Address(from);
      absl::StatusOr<std::optional<Hello>> hello =
          ReadHello(fd, who, std::min(deadline, absl::Now() + kHelloWait));
      if (hello.ok() && !hello->has_value()) {  // not one of ours
        ::close(fd);
        continue;
      }
      const int rank = hello.ok() ? (*hello)->rank : -1;
      if (!hello.ok()) {
        error = hello.status();
      } else if ((*hello)->world != env.world_size) {
        error = absl::InvalidArgumentError(
            absl::StrCat("rank ", rank, " (", who, ") was started with world size ",
                         (*hello)->world, ", rank 0 with ", env.world_size));
      } else if (rank < 1 || rank >= env.world_size || group->peers_[rank] != nullptr) {
        error = absl::InvalidArgumentError(
            absl::StrCat("rank ", rank, " (", who, ") joined twice or out of range"));
      } else if ((*hello)->key != key) {
        error = absl::InvalidArgumentError(
            absl::StrCat("rank ", rank, " (", who,
                         ") computed another plan than rank 0 (same command and inputs on "
                         "every rank?)"));
      }
      if (!error.ok()) {
        WriteAll(fd, EncodeFrame(MessageType::kFailed, error.message()), "").IgnoreError();
        ::close(fd);
        break;
      }
      auto peer = std::make_unique<Peer>(rank, fd);
      SetSocketOptions(fd, peer_timeout);
      group->peers_[rank] = std::move(peer);
      ++joined;
    }
    ::close(listener);
    if (!error.ok()) {
      for (auto& p : group->peers_) {
        if (p != nullptr) {
          WriteAll(p->fd, EncodeFrame(MessageType::kFailed, error.message()), "").IgnoreError();
        }
      }
      return error;
    }
  }
  group->state_->loop = std::thread([g = group.get()] { g->Loop(); });
  return group;
}

}  // namespace ucp::converters::execute
