#include "runtime/dist/comm.h"

#include <ATen/ops/empty.h>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <vector>

namespace ucp::runtime {
namespace {

bool IsBf16(const at::Tensor& t) { return t.scalar_type() == at::kBFloat16; }

}  // namespace

std::unique_ptr<Comm> Comm::Create(const CommOptions& o) {
  std::unique_ptr<Comm> c(new Comm());
  c->rank_ = o.rank;
  c->size_ = o.world_size;
  if (o.world_size == 1) return c;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(o.master_port);
    so.isServer = o.rank == 0;
    so.numWorkers = static_cast<size_t>(o.world_size);
    so.timeout = o.timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
    auto opts = c10d::ProcessGroupGloo::Options::create(o.timeout);
    // The loopback device for a single host; the master's address reaches every node otherwise.
    const bool local = o.master_addr == "127.0.0.1" || o.master_addr == "localhost";
    opts->devices.push_back(
        c10d::ProcessGroupGloo::createDeviceForHostname(local ? "127.0.0.1" : o.master_addr));
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("ucp_world", store), o.rank, o.world_size, opts);
    // Keep the intrusive pointers alive in shared_ptrs (the header stays free of c10d types).
    c->store_ = std::shared_ptr<void>(store.release(), [](void* p) {
      c10::intrusive_ptr<c10d::TCPStore>::reclaim(static_cast<c10d::TCPStore*>(p));
    });
    c10d::ProcessGroup* raw = pg.release();
    c->pg_ = std::shared_ptr<c10d::ProcessGroup>(
        raw, [](c10d::ProcessGroup* p) { c10::intrusive_ptr<c10d::ProcessGroup>::reclaim(p); });
    c->StartHeartbeat(o);
  } catch (const std::exception& e) {
    throw CommError(std::string("cannot join the process group at ") + o.master_addr + ":" +
                    std::to_string(o.master_port) + " as rank " + std::to_string(o.rank) + " of " +
                    std::to_string(o.world_size) + ": " + e.what());
  }
  return c;
}

Comm::~Comm() { StopHeartbeat(); }

std::unique_ptr<Comm> Comm::Subgroup(const std::vector<int>& ranks, const std::string& name) {
  std::unique_ptr<Comm> c(new Comm());
  c->parent_ = this;
  c->size_ = static_cast<int>(ranks.size());
  c->rank_ = -1;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (ranks[i] == rank_) c->rank_ = static_cast<int>(i);
  }
  if (c->rank_ < 0) throw std::invalid_argument("Subgroup " + name + " does not hold this rank");
  if (c->size_ == 1) return c;
  Run("creating the group", [&] {
    auto* raw = static_cast<c10d::Store*>(store_.get());
    auto store = c10::intrusive_ptr<c10d::Store>::unsafe_reclaim_from_nonowning(raw);
    auto* gloo = static_cast<c10d::ProcessGroupGloo*>(pg_.get());
    auto opts = c10d::ProcessGroupGloo::Options::create(gloo->getOptions()->timeout);
    opts->devices = gloo->getOptions()->devices;
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("ucp_" + name, store), c->rank_, c->size_, opts);
    c10d::ProcessGroup* p = pg.release();
    c->pg_ = std::shared_ptr<c10d::ProcessGroup>(
        p, [](c10d::ProcessGroup* q) { c10::intrusive_ptr<c10d::ProcessGroup>::reclaim(q); });
  });
  c->store_ = store_;
  return c;
}

namespace {
std::string HeartbeatKey(int rank) { return "ucp_heartbeat_" + std::to_string(rank); }
}  // namespace

void Comm::StartHeartbeat(const CommOptions& o) {
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(o.master_port);
  so.isServer = false;
  so.timeout = std::chrono::seconds(5);
  auto store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
  c10d::Store* raw = store.release();
  heartbeat_store_ = std::shared_ptr<c10d::Store>(
      raw, [](c10d::Store* p) { c10::intrusive_ptr<c10d::Store>::reclaim(p); });
  heartbeat_store_->add(HeartbeatKey(rank_), 1);
  heartbeat_ = std::thread([this] {
    while (!stop_.load()) {
      for (int i = 0; i < 10 && !stop_.load(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      try {
        heartbeat_store_->add(HeartbeatKey(rank_), 1);
      } catch (...) {
        return;  // the store (rank 0) is gone: the next collective says so
      }
    }
  });
}

void Comm::StopHeartbeat() {
  stop_ = true;
  if (heartbeat_.joinable()) heartbeat_.join();
}

std::string Comm::DeadPeers() {
  if (parent_ != nullptr) return parent_->DeadPeers();
  if (!heartbeat_store_) return "";
  StopHeartbeat();  // the store client is ours alone from here
  auto counters = [&]() {
    std::vector<int64_t> v;
    for (int r = 0; r < size_; ++r) v.push_back(heartbeat_store_->add(HeartbeatKey(r), 0));
    return v;
  };
  try {
    const std::vector<int64_t> before = counters();
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    const std::vector<int64_t> after = counters();
    std::string dead;
    for (int r = 0; r < size_; ++r) {
      if (r != rank_ && after[r] == before[r])
        dead += (dead.empty() ? "" : ", ") + std::to_string(r);
    }
    return dead.empty() ? "" : "; rank(s) " + dead + " stopped answering (dead or hung)";
  } catch (const std::exception&) {
    return "; rank 0, which serves the rendezvous store, is gone (dead or hung)";
  }
}

void Comm::Run(const char* what, const std::function<void()>& op) {
  try {
    op();
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    throw CommError(std::string(what) + " failed on rank " + std::to_string(rank_) + " of " +
                    std::to_string(size_) + DeadPeers() + ": " + msg);
  }
}

void Comm::AllReduceSum(at::Tensor& t) {
  if (size_ == 1) return;
  Run("all-reduce", [&] {
    if (IsBf16(t)) {  // Gloo has no bf16 reduction: reduce in fp32, copy back
      at::Tensor f = t.to(at::kFloat);
      std::vector<at::Tensor> v{f};
      pg_->allreduce(v)->wait();
      t.copy_(f);
      return;
    }
    std::vector<at::Tensor> v{t};
    pg_->allreduce(v)->wait();
  });
}

void Comm::AllReduceMax(at::Tensor& t) {
  if (size_ == 1) return;
  Run("all-reduce max", [&] {
    at::Tensor f = IsBf16(t) ? t.to(at::kFloat) : t;
    std::vector<at::Tensor> v{f};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::MAX;
    pg_->allreduce(v, opts)->wait();
    if (IsBf16(t)) t.copy_(f);
  });
}

void Comm::Broadcast(at::Tensor& t, int root) {
  if (size_ == 1) return;
  Run("broadcast", [&] {
    std::vector<at::Tensor> v{IsBf16(t) ? t.view(at::kHalf) : t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    pg_->broadcast(v, opts)->wait();
  });
}

void Comm::AllGather(const at::Tensor& part, at::Tensor& out) {
  const int64_t n = part.numel();
  if (size_ == 1) {
    out.narrow(0, 0, n).copy_(part.reshape({-1}));
    return;
  }
  Run("all-gather", [&] {
    const bool bf = IsBf16(part);
    at::Tensor in = (bf ? part.view(at::kHalf) : part).reshape({-1}).contiguous();
    at::Tensor flat = bf ? out.view(at::kHalf) : out;
    std::vector<at::Tensor> outs;
    for (int r = 0; r < size_; ++r) outs.push_back(flat.narrow(0, r * n, n));
    std::vector<std::vector<at::Tensor>> outputs{outs};
    std::vector<at::Tensor> inputs{in};
    pg_->allgather(outputs, inputs)->wait();
  });
}

void Comm::Gather(const at::Tensor& part, at::Tensor& out, int root) {
  const int64_t n = part.numel();
  if (size_ == 1) {
    out.narrow(0, 0, n).copy_(part.reshape({-1}));
    return;
  }
  Run("gather", [&] {
    const bool bf = IsBf16(part);
    at::Tensor in = (bf ? part.view(at::kHalf) : part).reshape({-1}).contiguous();
    std::vector<std::vector<at::Tensor>> outputs;
    if (rank_ == root) {
      at::Tensor flat = bf ? out.view(at::kHalf) : out;
      std::vector<at::Tensor> outs;
      for (int r = 0; r < size_; ++r) outs.push_back(flat.narrow(0, r * n, n));
      outputs.push_back(outs);
    }
    std::vector<at::Tensor> inputs{in};
    c10d::GatherOptions opts;
    opts.rootRank = root;
    pg_->gather(outputs, inputs, opts)->wait();
  });
}

at::Tensor Comm::ReduceScatterSum(at::Tensor& full) {
  const int64_t n = full.numel() / size_;
  AllReduceSum(full);  // Gloo has no reduce-scatter (toolchain.md §2)
  return full.narrow(0, static_cast<int64_t>(rank_) * n, n);
}

void Comm::AllToAll(const at::Tensor& in, at::Tensor& out, const std::vector<int64_t>& in_splits,
                    const std::vector<int64_t>& out_splits) {
  if (size_ == 1) {
    out.copy_(in);
    return;
  }
  Run("all-to-all", [&] {
    // Byte moves: bf16 travels as fp16 (Gloo's alltoall has no bf16).
    const bool bf = IsBf16(in);
    at::Tensor src = (bf ? in.view(at::kHalf) : in).contiguous();
    at::Tensor dst = bf ? out.view(at::kHalf) : out;
    std::vector<int64_t> ins = in_splits, outs = out_splits;
    pg_->alltoall_base(dst, src, outs, ins)->wait();
  });
}

void Comm::Barrier() {
  if (size_ == 1) return;
  Run("barrier", [&] { pg_->barrier()->wait(); });
}

}  // namespace ucp::runtime
