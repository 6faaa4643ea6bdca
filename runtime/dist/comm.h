// Comm: the runtime's one handle on a c10d process group (Gloo on CPU; NCCL when LibTorch has it).
// The engine only calls these collectives; they hide what Gloo lacks (specs/toolchain.md §2):
// bf16 reductions run in fp32 and are copied back, bf16 byte moves travel as fp16 views,
// reduce-scatter is an all-reduce of which each rank keeps its slice. A collective that fails
// (a peer died, the timeout passed) throws CommError naming the operation and the ranks that
// stopped answering: every rank bumps a heartbeat counter in the rendezvous store each second,
// and a failing rank looks for the counters that stopped (torchrun / srun runs, where no ucp
// launcher watches the ranks). train_main turns it into one `error:` line and exit 1, never a
// hang.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace c10d {
class ProcessGroup;
class Store;
}  // namespace c10d

namespace ucp::runtime {

class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CommOptions {
  int rank = 0, world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // unused when world_size is 1
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};
};

class Comm {
 public:
  // Rendezvous through a TCPStore at master_addr:master_port (rank 0 serves it), then one Gloo
  // group of all ranks. world_size 1 needs no store and no network.
  static std::unique_ptr<Comm> Create(const CommOptions& options);
  ~Comm();

  // A group of some ranks of this one (`ranks`: ranks of this Comm, ascending, holding this
  // rank), e.g. an expert-parallel group: a Gloo group of its own over the same rendezvous store
  // under the prefix `name`, which every member must pass alike. Its errors name dead peers by
  // their rank in this Comm. A group of one rank needs no network.
  std::unique_ptr<Comm> Subgroup(const std::vector<int>& ranks, const std::string& name);

  int rank() const { return rank_; }
  int size() const { return size_; }

  // In place, every rank: element-wise sum / max over ranks.
  void AllReduceSum(at::Tensor& t);
  void AllReduceMax(at::Tensor& t);
  void Broadcast(at::Tensor& t, int root);
  // out (contiguous, size() · part.numel() elements, part's dtype) = every rank's `part` in rank
  // order.
  void AllGather(const at::Tensor& part, at::Tensor& out);
  // Only `root`'s `out` is written (others may pass an undefined tensor).
  void Gather(const at::Tensor& part, at::Tensor& out, int root);
  // Each rank gets the sum over ranks of its slice [rank · n, (rank + 1) · n) of `full`
  // (full.numel() = size() · n); `full` is clobbered.
  at::Tensor ReduceScatterSum(at::Tensor& full);
  // Rows along dim 0: this rank sends in_splits[r] consecutive rows of `in` to rank r and
  // receives out_splits[r] rows from rank r into `out`, in rank order (uneven splits allowed;
  // the counts must agree pairwise, as an exchange of counts first makes sure).
  void AllToAll(const at::Tensor& in, at::Tensor& out, const std::vector<int64_t>& in_splits,
                const std::vector<int64_t>& out_splits);
  void Barrier();

 private:
  Comm() = default;
  void Run(const char* what, const std::function<void()>& op);
  void StartHeartbeat(const CommOptions& options);
  void StopHeartbeat();
  // "; rank(s) 2 stopped answering (dead or hung)" or what is known; "" when nothing is.
  std::string DeadPeers();

  int rank_ = 0, size_ = 1;
  Comm* parent_ = nullptr;       // a Subgroup's: names dead peers
  std::shared_ptr<void> store_;  // keeps the TCPStore alive with the group
  std::shared_ptr<c10d::ProcessGroup> pg_;
  std::shared_ptr<c10d::Store> heartbeat_store_;  // its own client of the rendezvous store
  std::thread heartbeat_;
  std::atomic<bool> stop_{false};
};

}  // namespace ucp::runtime
