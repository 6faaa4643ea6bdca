// RankGroup: the coordination of a distributed conversion (`ucp convert | reshard | export
// --distributed`, docs/distributed.md): a star of TCP connections, rank 0 in the middle, carrying
// length-prefixed messages. Why not MPI or c10d: c10d's TCPStore is LibTorch's and the toolkit
// must not link it (docs/architecture.md, layers); MPI would add a build-time dependency and only
// work under mpirun, while ranks here come from torchrun, srun or mpirun alike. What the
// conversion needs is small: a handshake, one broadcast, one gather and failure propagation.
//
// Wire format: dist_wire.h (frames, the hello, every check of what a peer sends). The first
// frame on a connection is the hello; rank 0 refuses a rank of another protocol version, out of
// range, a duplicate, another world size or another key (a different plan) with an error naming
// the rank and its address. Connections that do not start with our magic (a port scanner) are
// dropped.
//
// Liveness: a background thread sends kHeartbeat every second to each peer and reads every
// socket. A peer whose connection closes (kill -9 closes it at once) or that stays silent for
// `timeout` is dead; so is one that sends kFailed. Every rank then sees `failed()` set and
// `failure()` naming the rank ("rank 2: connection closed"), and `cancel()` becomes true, so that
// the executor stops between chunks: no rank hangs on a dead one. Rank 0 forwards a failure to
// every other rank (kFailed with the text).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "converters/execute/dist_wire.h"
#include "converters/launch/rank_env.h"

namespace ucp::converters::execute {

class RankGroup {
 public:
  // Rank 0 listens on `port` (launch::CoordinatorPort) and waits up to `connect_timeout` for
  // every other rank; the others connect to env.master_addr:port (retrying until the timeout:
  // rank 0 may start later).
  // `key` must be the same on every rank (the plan's fingerprint). `peer_timeout` is the silence
  // after which a peer is dead. Errors: Unavailable (no connection, timeouts: naming the ranks
  // missing), InvalidArgument (a hello that does not fit, naming the rank), socket errors.
  static absl::StatusOr<std::unique_ptr<RankGroup>> Join(const launch::RankEnv& env, int port,
                                                         uint64_t key,
                                                         absl::Duration connect_timeout,
                                                         absl::Duration peer_timeout);
  ~RankGroup();  // stops the thread, closes the sockets
  RankGroup(const RankGroup&) = delete;
  RankGroup& operator=(const RankGroup&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_; }

  // Sends kData to `peer` (rank 0: any rank; others: only 0).
  absl::Status Send(int peer, const std::string& payload);
  // The next kData from `peer`, waiting until it comes or the group failed (the failure).
  absl::StatusOr<std::string> Receive(int peer);
  // Declares this rank failed: the peers learn `message` (rank 0 forwards it to all).
  void Fail(const std::string& message);
  // Set once any rank failed or died (or Fail was called): the executor's cancel flag.
  const std::atomic<bool>* cancel() const { return &failed_; }
  bool failed() const { return failed_.load(); }
  std::string failure() const;

 private:
  struct Peer;
  RankGroup(int rank, int world, absl::Duration peer_timeout);
  void Loop();
  void MarkFailed(const std::string& message, bool forward);
  absl::Status SendFrame(Peer& peer, MessageType type, const std::string& payload);
  void ReadFrom(Peer& peer);

  int rank_;
  int world_;
  absl::Duration peer_timeout_;
  std::vector<std::unique_ptr<Peer>> peers_;  // by rank (rank 0 has every other; others: only 0)
  std::atomic<bool> failed_{false};
  std::atomic<bool> stop_{false};
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace ucp::converters::execute
