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

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "formats/base/status.h"

namespace ucp::converters::execute {
namespace {

constexpr uint32_t kMagic = 0x44504355;  // "UCPD"
constexpr size_t kHeaderBytes = 16;
constexpr auto kHeartbeatEvery = std::chrono::seconds(1);

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetLE(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

std::string Frame(MessageType type, const std::string& payload) {
  std::string out;
  out.reserve(kHeaderBytes + payload.size());
  PutU32(&out, kMagic);
  PutU32(&out, static_cast<uint32_t>(type));
  PutU64(&out, payload.size());
  out += payload;
  return out;
}

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

absl::StatusOr<int> ParseVar(const std::function<const char*(const char*)>& getenv_fn,
                             const char* name) {
  const char* value = getenv_fn(name);
  int parsed = 0;
  if (value == nullptr) return absl::InvalidArgumentError(absl::StrCat(name, " is not set"));
  if (!absl::SimpleAtoi(value, &parsed)) {
    return absl::InvalidArgumentError(absl::StrCat(name, "='", value, "' is not an integer"));
  }
  return parsed;
}

}  // namespace

absl::StatusOr<RankEnv> ReadRankEnv(const std::function<const char*(const char*)>& getenv_fn) {
  struct Names {
    const char* launcher;
    const char* rank;
    const char* world;
    const char* local;
  };
  static constexpr Names kLaunchers[] = {
      {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
      {"srun", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
      {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
  };
  RankEnv env;
  for (const Names& n : kLaunchers) {
    if (getenv_fn(n.rank) == nullptr) continue;
    env.launcher = n.launcher;
    UCP_ASSIGN_OR_RETURN(env.rank, ParseVar(getenv_fn, n.rank));
    UCP_ASSIGN_OR_RETURN(env.world_size, ParseVar(getenv_fn, n.world));
    if (getenv_fn(n.local) != nullptr) {
      UCP_ASSIGN_OR_RETURN(env.local_rank, ParseVar(getenv_fn, n.local));
    }
    if (env.world_size < 1 || env.world_size > 65536) {
      return absl::InvalidArgumentError(
          absl::StrCat(n.world, "=", env.world_size, " is not a world size (1..65536)"));
    }
    if (env.rank < 0 || env.rank >= env.world_size) {
      return absl::InvalidArgumentError(
          absl::StrCat(n.rank, "=", env.rank, " is not below ", n.world, "=", env.world_size));
    }
    break;
  }
  if (env.world_size == 1) return env;
  const char* addr = getenv_fn("MASTER_ADDR");
  if (addr == nullptr || *addr == '\0') return absl::InvalidArgumentError("MASTER_ADDR is not set");
  env.master_addr = addr;
  const bool own_port = getenv_fn("UCP_DIST_PORT") != nullptr;
  UCP_ASSIGN_OR_RETURN(env.port, ParseVar(getenv_fn, own_port ? "UCP_DIST_PORT" : "MASTER_PORT"));
  if (!own_port && env.launcher == "torchrun" && getenv_fn("TORCHELASTIC_RUN_ID") != nullptr) {
    ++env.port;  // the elastic agent's store holds MASTER_PORT
  }
  if (env.port < 1 || env.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port ", env.port, " is not in 1..65535"));
  }
  return env;
}

absl::StatusOr<RankEnv> ReadRankEnv() {
  return ReadRankEnv([](const char* name) { return std::getenv(name); });
}

struct RankGroup::Peer {
  int rank = -1;
  int fd = -1;
  std::mutex send_mu;
  std::string in;                // bytes received, not yet a whole frame
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
  return WriteAll(peer.fd, Frame(type, payload), absl::StrCat("rank ", peer.rank));
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
  peer.in.append(buffer, static_cast<size_t>(n));
  while (peer.in.size() >= kHeaderBytes) {
    const uint32_t magic = static_cast<uint32_t>(GetLE(peer.in.data(), 4));
    const uint32_t type = static_cast<uint32_t>(GetLE(peer.in.data() + 4, 4));
    const uint64_t length = GetLE(peer.in.data() + 8, 8);
    if (magic != kMagic || length > kMaxMessageBytes || type < 2 || type > 4) {
      peer.closed = true;
      MarkFailed(absl::StrCat("rank ", peer.rank, " sent a malformed message"), rank_ == 0);
      return;
    }
    if (peer.in.size() - kHeaderBytes < length) return;
    std::string payload = peer.in.substr(kHeaderBytes, length);
    peer.in.erase(0, kHeaderBytes + length);
    if (type == static_cast<uint32_t>(MessageType::kData)) {
      {
        std::lock_guard<std::mutex> lock(state_->mu);
        peer.data.push_back(std::move(payload));
      }
      state_->cv.notify_all();
    } else if (type == static_cast<uint32_t>(MessageType::kFailed)) {
      // From rank 0 the text already names the failed rank; from another rank, it does too.
      MarkFailed(payload, rank_ == 0);
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

std::string Hello(int rank, int world, uint64_t key) {
  std::string payload;
  PutU32(&payload, static_cast<uint32_t>(rank));
  PutU32(&payload, static_cast<uint32_t>(world));
  PutU64(&payload, key);
  return Frame(MessageType::kHello, payload);
}

}  // namespace

absl::StatusOr<std::unique_ptr<RankGroup>> RankGroup::Join(const RankEnv& env, uint64_t key,
                                                           absl::Duration connect_timeout,
                                                           absl::Duration peer_timeout) {
  std::unique_ptr<RankGroup> group(new RankGroup(env.rank, env.world_size, peer_timeout));
  const absl::Time deadline = absl::Now() + connect_timeout;
  if (env.rank != 0) {
    UCP_ASSIGN_OR_RETURN(const int fd, Connect(env.master_addr, env.port, deadline));
    auto peer = std::make_unique<Peer>();
    peer->rank = 0;
    peer->fd = fd;
    SetSocketOptions(fd, peer_timeout);
    UCP_RETURN_IF_ERROR(WriteAll(fd, Hello(env.rank, env.world_size, key), "rank 0"));
    group->peers_[0] = std::move(peer);
  } else {
    UCP_ASSIGN_OR_RETURN(const int listener, Listen(env.port));
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
      const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      char hello[kHeaderBytes + 16];
      const absl::Status read =
          ReadExactly(fd, hello, sizeof(hello), absl::Now() + absl::Seconds(10));
      const bool framed = read.ok() && GetLE(hello, 4) == kMagic &&
                          GetLE(hello + 4, 4) == static_cast<uint32_t>(MessageType::kHello) &&
                          GetLE(hello + 8, 8) == 16;
      if (!framed) {  // not one of ours
        ::close(fd);
        continue;
      }
      const int rank = static_cast<int>(static_cast<int32_t>(GetLE(hello + 16, 4)));
      const int world = static_cast<int>(static_cast<int32_t>(GetLE(hello + 20, 4)));
      const uint64_t their_key = GetLE(hello + 24, 8);
      if (world != env.world_size) {
        error =
            absl::InvalidArgumentError(absl::StrCat("rank ", rank, " was started with world size ",
                                                    world, ", rank 0 with ", env.world_size));
      } else if (rank < 1 || rank >= env.world_size || group->peers_[rank] != nullptr) {
        error = absl::InvalidArgumentError(
            absl::StrCat("rank ", rank, " joined twice or out of range"));
      } else if (their_key != key) {
        error = absl::InvalidArgumentError(
            absl::StrCat("rank ", rank,
                         " computed another plan than rank 0 (same command and inputs on "
                         "every rank?)"));
      }
      auto peer = std::make_unique<Peer>();
      peer->rank = rank;
      peer->fd = fd;
      SetSocketOptions(fd, peer_timeout);
      if (!error.ok()) {
        WriteAll(fd, Frame(MessageType::kFailed, std::string(error.message())), "").IgnoreError();
        ::close(fd);
        break;
      }
      group->peers_[rank] = std::move(peer);
      ++joined;
    }
    ::close(listener);
    if (!error.ok()) {
      for (auto& p : group->peers_) {
        if (p != nullptr) {
          WriteAll(p->fd, Frame(MessageType::kFailed, std::string(error.message())), "")
              .IgnoreError();
        }
      }
      return error;
    }
  }
  group->state_->loop = std::thread([g = group.get()] { g->Loop(); });
  return group;
}

}  // namespace ucp::converters::execute
