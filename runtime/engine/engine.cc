#include "runtime/engine/engine.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <cmath>
#include <stdexcept>

#include "runtime/engine/unit_recompute.h"

namespace ucp::runtime {

struct Engine::Group {
  std::unique_ptr<ShardLayout> layout;
  RankShard shard;
  // kFlat: each parameter's offset in the flat buffer; kPerParam: in the rank's partition.
  std::vector<int64_t> offsets;
  std::vector<PerParamPiece> pieces;       // kPerParam: each parameter's piece on this rank
  at::Tensor flat_lp;                      // kFlat: the whole padded flat buffer (params are views)
  at::Tensor lp_part;                      // kPerParam: this rank's low-precision partition
  at::Tensor master, exp_avg, exp_avg_sq;  // this rank's partition, fp32
  at::Tensor grad;                         // this rank's accumulated gradient partition
};

namespace {

at::TensorOptions Opts(at::ScalarType t) { return at::TensorOptions().dtype(t); }

}  // namespace

Engine::Engine(Model& model, Comm& comm, EngineConfig config, std::vector<OptimGroup> groups,
               ExpertComms experts, TpGroup tp)
    : model_(model),
      comm_(comm),
      config_(std::move(config)),
      experts_(experts),
      tp_(tp),
      groups_(std::move(groups)) {
  BuildGroups();
}

Comm& Engine::GroupComm(int group) const {
  if (groups_[group].expert && experts_.edp != nullptr) return *experts_.edp;
  return comm_;
}

Engine::~Engine() = default;

void Engine::BuildGroups() {
  auto& params = model_.params();
  group_of_.assign(params.size(), -1);
  index_in_.assign(params.size(), -1);
  const bool flat = config_.stage < 3;
  for (size_t g = 0; g < groups_.size(); ++g) {
    Comm& gc = GroupComm(static_cast<int>(g));
    ucp::Topology topo;
    topo.dp = config_.stage == 0 ? 1 : gc.size();
    auto st = std::make_unique<Group>();
    GroupSpec spec;
    spec.kind = flat ? PartitionKind::kFlat : PartitionKind::kPerParam;
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const int p = groups_[g].params[i];
      if (group_of_[p] != -1) throw std::invalid_argument(params[p].name + " is in two groups");
      if (params[p].expert() != groups_[g].expert)
        throw std::invalid_argument(params[p].name + ": expert weights and other parameters " +
                                    "in one param group (" + groups_[g].name + ")");
      group_of_[p] = static_cast<int>(g);
      index_in_[p] = static_cast<int>(i);
      spec.numels.push_back(params[p].numel());
    }
    st->layout = std::make_unique<ShardLayout>(spec, topo);
    const int rank = config_.stage == 0 ? 0 : gc.rank();
    st->shard = st->layout->Shard(rank);
    const int64_t part = st->layout->partition_size();
    int64_t off = 0;
    for (size_t i = 0; i < spec.numels.size(); ++i) {
      st->offsets.push_back(off);
      if (flat) {
        off += spec.numels[i];
      } else {
        st->pieces.push_back(PerParamShard(spec.numels[i], topo.dp, rank));
        off += st->pieces.back().partition;
      }
    }
    if (flat) {
      st->flat_lp = at::zeros({st->layout->flat_length()}, Opts(config_.dtype));
      for (size_t i = 0; i < spec.numels.size(); ++i) {
        ModelParam& mp = params[groups_[g].params[i]];
        mp.value = st->flat_lp.narrow(0, st->offsets[i], spec.numels[i]).view(mp.shape).detach();
        mp.value.set_requires_grad(true);
      }
    } else {
      st->lp_part = at::zeros({part}, Opts(config_.dtype));
    }
    st->master = at::zeros({part}, Opts(at::kFloat));
    st->exp_avg = at::zeros({part}, Opts(at::kFloat));
    st->exp_avg_sq = at::zeros({part}, Opts(at::kFloat));
    state_.push_back(std::move(st));
  }
  for (size_t p = 0; p < params.size(); ++p) {
    if (params[p].kind == ParamKind::kTrainable && group_of_[p] < 0)
      throw std::invalid_argument("trainable parameter " + params[p].name + " is in no group");
    if (params[p].kind != ParamKind::kTrainable)
      params[p].value = at::zeros(params[p].shape, Opts(config_.dtype));
  }
}

void Engine::SetParam(int param, const at::Tensor& fp32_in, const at::Tensor& m_in,
                      const at::Tensor& v_in) {
  at::NoGradGuard no_grad;
  ModelParam& mp = model_.params()[param];
  at::Tensor fp32 = fp32_in.to(at::kFloat).reshape({-1});
  if (fp32.numel() != mp.numel())
    throw std::invalid_argument("parameter " + mp.name + ": " + std::to_string(fp32.numel()) +
                                " elements given, the model has " + std::to_string(mp.numel()));
  if (group_of_[param] < 0) {
    mp.value = fp32.to(config_.dtype).view(mp.shape).clone();
    return;
  }
  Group& g = *state_[group_of_[param]];
  const int i = index_in_[param];
  auto moment = [&](const at::Tensor& t) {
    return t.defined() ? t.to(at::kFloat).reshape({-1}) : at::zeros({mp.numel()}, Opts(at::kFloat));
  };
  const at::Tensor m = moment(m_in), v = moment(v_in);
  if (config_.stage < 3) {
    g.flat_lp.narrow(0, g.offsets[i], mp.numel()).copy_(fp32.to(config_.dtype));
    for (const ShardPiece& piece : g.shard.pieces) {
      if (piece.param != i) continue;
      g.master.narrow(0, piece.partition_offset, piece.numel)
          .copy_(fp32.narrow(0, piece.param_offset, piece.numel));
      g.exp_avg.narrow(0, piece.partition_offset, piece.numel)
          .copy_(m.narrow(0, piece.param_offset, piece.numel));
      g.exp_avg_sq.narrow(0, piece.partition_offset, piece.numel)
          .copy_(v.narrow(0, piece.param_offset, piece.numel));
    }
    return;
  }
  const PerParamPiece& pc = g.pieces[i];
  if (pc.valid > 0) {
    const int64_t at_ = g.offsets[i];
    g.master.narrow(0, at_, pc.valid).copy_(fp32.narrow(0, pc.offset, pc.valid));
    g.exp_avg.narrow(0, at_, pc.valid).copy_(m.narrow(0, pc.offset, pc.valid));
    g.exp_avg_sq.narrow(0, at_, pc.valid).copy_(v.narrow(0, pc.offset, pc.valid));
    g.lp_part.narrow(0, at_, pc.valid).copy_(fp32.narrow(0, pc.offset, pc.valid));
  }
}

std::vector<std::pair<int64_t, int64_t>> Engine::OwnedRanges(int param) const {
  std::vector<std::pair<int64_t, int64_t>> out;
  if (group_of_[param] < 0) return out;
  const Group& g = *state_[group_of_[param]];
  const int i = index_in_[param];
  if (config_.stage < 3) {
    for (const ShardPiece& piece : g.shard.pieces) {
      if (piece.param == i) out.emplace_back(piece.param_offset, piece.numel);
    }
  } else if (g.pieces[i].valid > 0) {
    out.emplace_back(g.pieces[i].offset, g.pieces[i].valid);
  }
  return out;
}

void Engine::SetOwned(int param, StateTensor which, int64_t offset, const at::Tensor& values) {
  at::NoGradGuard no_grad;
  Group& g = *state_[group_of_[param]];
  const int i = index_in_[param];
  at::Tensor& part = which == StateTensor::kFp32     ? g.master
                     : which == StateTensor::kExpAvg ? g.exp_avg
                                                     : g.exp_avg_sq;
  const at::Tensor v = values.to(at::kFloat).reshape({-1});
  if (config_.stage < 3) {
    for (const ShardPiece& piece : g.shard.pieces) {
      if (piece.param == i && piece.param_offset == offset)
        part.narrow(0, piece.partition_offset, piece.numel).copy_(v);
    }
    return;
  }
  part.narrow(0, g.offsets[i], v.numel()).copy_(v);
  if (which == StateTensor::kFp32) g.lp_part.narrow(0, g.offsets[i], v.numel()).copy_(v);
}

void Engine::SetModule(int param, const at::Tensor& fp32) {
  at::NoGradGuard no_grad;
  ModelParam& mp = model_.params()[param];
  if (group_of_[param] < 0) {
    mp.value = fp32.to(config_.dtype).view(mp.shape).clone();
    return;
  }
  if (config_.stage == 3) return;  // the partitions come with SetOwned(kFp32)
  Group& g = *state_[group_of_[param]];
  g.flat_lp.narrow(0, g.offsets[index_in_[param]], mp.numel())
      .copy_(fp32.reshape({-1}).to(config_.dtype));
}

// ---- ZeRO-3 gather / release (unit_recompute.h calls these) ----

at::Tensor Engine::GatherParam(int param) {
  ModelParam& mp = model_.params()[param];
  if (group_of_[param] < 0 || config_.stage < 3) return mp.value;
  Group& g = *state_[group_of_[param]];
  const int i = index_in_[param];
  const int64_t P = g.pieces[i].partition;
  Comm& gc = GroupComm(group_of_[param]);
  at::Tensor full = at::empty({P * gc.size()}, Opts(config_.dtype));
  gc.AllGather(g.lp_part.narrow(0, g.offsets[i], P), full);
  return full.narrow(0, 0, mp.numel()).view(mp.shape);
}

void Engine::AddParamGrad(int param, const at::Tensor& grad) {
  if (!grad.defined()) return;
  Group& g = *state_[group_of_[param]];
  const int i = index_in_[param];
  Comm& gc = GroupComm(group_of_[param]);
  const int64_t P = g.pieces[i].partition, n = gc.size();
  // §4.4: chunks of ceil(numel / n), pre-divided by n, reduce-scattered (SUM); expert weights
  // (§1.7) then times edp / world, a net division by the world size.
  at::Tensor padded = at::zeros({P * n}, Opts(GradDtype()));
  padded.narrow(0, 0, grad.numel()).copy_(grad.reshape({-1}));
  padded.mul_(1.0 / static_cast<double>(n));
  at::Tensor mine = gc.ReduceScatterSum(padded);
  if (groups_[group_of_[param]].expert && n != comm_.size())
    mine.mul_(static_cast<double>(n) / static_cast<double>(comm_.size()));
  if (!g.grad.defined()) g.grad = at::zeros({g.layout->partition_size()}, Opts(GradDtype()));
  g.grad.narrow(0, g.offsets[i], P).add_(mine);
}

at::ScalarType Engine::GradDtype() const {
  return config_.fp32_grad_accum ? at::kFloat : config_.dtype;
}

at::Tensor Engine::UnitChainLoss(const at::Tensor& x, const at::Tensor& y) {
  at::Tensor h = x;
  for (int u = 0; u < model_.num_units(); ++u) {
    const bool selective = config_.activation_checkpointing;
    if (config_.stage == 3) {
      h = RunGatheredUnit(*this, u, h, y, selective);
    } else {
      h = selective ? RunCheckpointedUnit(*this, u, h, y, true) : model_.Unit(u, h, y);
    }
  }
  return h;
}

// ---- stages 0-2: gradients into the flat partitions ----

void Engine::ReduceGradients(bool boundary) {
  const double world = static_cast<double>(comm_.size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    Group& g = *state_[gi];
    Comm& gc = GroupComm(static_cast<int>(gi));
    const double divisor = world / static_cast<double>(config_.sp_grad_quirk);
    at::Tensor flat = at::zeros({g.layout->flat_length()}, Opts(GradDtype()));
    for (size_t i = 0; i < groups_[gi].params.size(); ++i) {
      ModelParam& mp = model_.params()[groups_[gi].params[i]];
      at::Tensor& grad = mp.value.mutable_grad();
      if (grad.defined()) {
        flat.narrow(0, g.offsets[i], mp.numel()).copy_(grad.reshape({-1}));
        grad.reset();
      }
    }
    // Over the group's ranks (expert weights: expert-DP), divided by the world size (§1.7).
    if (world > 1) {
      if (config_.stage == 0) {  // engine all-reduce: sum, then post-scale (§4.2)
        gc.AllReduceSum(flat);
        flat.mul_(1.0 / divisor);
      } else {  // ZeRO-1/2 average_tensor: ÷ dp, then sum (§4.3)
        flat.mul_(1.0 / divisor);
        gc.AllReduceSum(flat);
      }
    }
    at::Tensor mine = flat.narrow(0, g.shard.partition_rank * g.layout->partition_size(),
                                  g.layout->partition_size());
    if (!g.grad.defined()) {
      // Keep only the partition (a copy) unless it is the whole buffer (dp 1, stage 0).
      g.grad = mine.numel() == flat.numel() ? flat : mine.clone();
    } else {
      g.grad.add_(mine);
    }
  }
  (void)boundary;
}

double Engine::GradNormSquared() {
  if (tp_.active()) {
    // §4.3 with AutoTP: a slice of a TP-sharded parameter counts on every TP rank, a replicated
    // one on TP rank 0 only; summed over data-parallel ranks, then over the TP group.
    double local = 0;
    for (size_t gi = 0; gi < state_.size(); ++gi) {
      const Group& g = *state_[gi];
      if (!g.grad.defined()) continue;
      for (const ShardPiece& piece : g.shard.pieces) {
        const ModelParam& mp = model_.params()[groups_[gi].params[piece.param]];
        if (!mp.tp_sharded && tp_.rank != 0) continue;
        local += g.grad.narrow(0, piece.partition_offset, piece.numel)
                     .to(at::kDouble)
                     .pow(2)
                     .sum()
                     .item<double>();
      }
    }
    at::Tensor t = at::empty({1}, Opts(at::kDouble)).fill_(local);
    if (config_.stage > 0) comm_.AllReduceSum(t);
    tp_.comm->AllReduceSum(t);
    return t.item<double>();
  }
  double local = 0, expert = 0;
  for (size_t gi = 0; gi < state_.size(); ++gi) {
    const at::Tensor& grad = state_[gi]->grad;
    if (!grad.defined()) continue;
    (groups_[gi].expert ? expert : local) += grad.to(at::kDouble).pow(2).sum().item<double>();
  }
  if (config_.stage == 0) {
    // Every rank holds every dense gradient and its EP rank's expert gradients. bf16
    // (FP16_UnfusedOptimizer.step): the norm of the non-expert gradients alone. fp32 (the engine's
    // clip_grad_norm_, runtime/utils.py): each rank's norm of its own gradients, averaged over the
    // ranks ("to consider MoE params"), so EP ranks' expert norms enter as a mean of norms.
    if (config_.dtype != at::kFloat) return local;
    if (experts_.ep == nullptr || experts_.ep->size() == 1) return local + expert;
    at::Tensor t = at::empty({1}, Opts(at::kDouble)).fill_(std::sqrt(local + expert));
    comm_.AllReduceSum(t);
    const double norm = t.item<double>() / comm_.size();
    return norm * norm;
  }
  local += expert;  // partitions of every group cover each element once over all ranks
  at::Tensor t = at::empty({1}, Opts(at::kDouble)).fill_(local);
  comm_.AllReduceSum(t);
  return t.item<double>();
}

StepResult Engine::Step(const std::vector<std::pair<at::Tensor, at::Tensor>>& micro_batches,
                        double lr) {
  StepResult r;
  const double gas = static_cast<double>(micro_batches.size());
  double loss_sum = 0;
  for (size_t k = 0; k < micro_batches.size(); ++k) {
    at::Tensor loss = UnitChainLoss(micro_batches[k].first, micro_batches[k].second);
    loss_sum += loss.item<double>();
    (loss * (1.0 / gas)).backward();
    const bool boundary = k + 1 == micro_batches.size();
    // ZeRO-2 reduces every micro-batch; 0 and 1 at the boundary; 3 in the units' backward.
    if (config_.stage == 2 || (config_.stage < 2 && boundary)) ReduceGradients(boundary);
  }
  at::Tensor l = at::empty({1}, Opts(at::kDouble)).fill_(loss_sum / gas);
  comm_.AllReduceSum(l);
  r.loss = l.item<double>() / comm_.size();

  at::NoGradGuard no_grad;
  const double norm = std::sqrt(GradNormSquared());
  r.grad_norm = norm;
  if (config_.check_overflow && !std::isfinite(norm)) {
    r.skipped = true;
  } else {
    double combined = 1.0;  // loss scale 1 (fp32 / bf16)
    if (config_.gradient_clipping > 0) {
      const double clip = (norm + 1e-6) / config_.gradient_clipping;
      if (clip > 1) combined = clip;
    }
    for (size_t gi = 0; gi < groups_.size(); ++gi) {
      Group& g = *state_[gi];
      OptimGroup& og = groups_[gi];
      at::Tensor grad = g.grad.defined() ? g.grad.to(at::kFloat) : at::zeros_like(g.master);
      if (combined != 1.0) grad.mul_(1.0 / combined);
      AdamStep s = config_.adam;
      s.lr = lr;
      s.weight_decay = og.weight_decay;
      s.step = og.step + 1;
      AdamUpdate(s, g.master, g.exp_avg, g.exp_avg_sq, grad);
      og.step += 1;
      if (config_.stage < 3) {
        const int64_t ps = g.layout->partition_size();
        at::Tensor part = g.flat_lp.narrow(0, g.shard.partition_rank * ps, ps);
        part.copy_(g.master);
        if (config_.stage > 0 && g.layout->world() > 1) {
          at::Tensor send = part.clone();
          GroupComm(static_cast<int>(gi)).AllGather(send, g.flat_lp);
        }
      } else {
        g.lp_part.copy_(g.master);
      }
    }
  }
  for (auto& g : state_) g->grad.reset();
  return r;
}

at::Tensor Engine::GatherExperts(const ModelParam& mp, const at::Tensor& local, int root) {
  const int ep = experts_.ep != nullptr ? experts_.ep->size() : 1;
  if (ep == 1) return local;
  // EP group 0 (expert-DP rank 0) holds every expert: ranks 0 .. ep-1, or with
  // use_data_before_expert_parallelism ranks 0, stride, 2*stride, ... (stride = world / ep).
  const int64_t n = mp.numel();
  const int world = comm_.size();
  at::Tensor all;
  if (comm_.rank() == root) all = at::empty({n * world}, Opts(local.scalar_type()));
  comm_.Gather(local.contiguous().reshape({-1}), all, root);
  if (comm_.rank() != root) return at::Tensor();
  const int64_t stride = experts_.data_first ? world / ep : 1;
  return all.view({world, n}).slice(0, 0, ep * stride, stride).contiguous().view(mp.global_shape());
}

std::vector<at::Tensor> Engine::GatherStates(StateTensor which, int root) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> out(model_.params().size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    Group& g = *state_[gi];
    const at::Tensor& part = which == StateTensor::kFp32     ? g.master
                             : which == StateTensor::kExpAvg ? g.exp_avg
                                                             : g.exp_avg_sq;
    const bool expert = groups_[gi].expert;
    Comm& gc = GroupComm(static_cast<int>(gi));
    const int world = g.layout->world();
    const int64_t ps = g.layout->partition_size();
    // The whole group (every partition) on root; expert groups on every rank of each expert-DP
    // group first, then each EP rank's experts to root.
    const bool holder = world == 1 || (expert ? true : comm_.rank() == root);
    at::Tensor full;
    if (world == 1) {
      full = part;  // stage 0: every rank holds the whole group
    } else {
      if (holder) full = at::empty({ps * world}, Opts(at::kFloat));
      if (expert) {
        gc.AllGather(part, full);
      } else {
        comm_.Gather(part, full, root);
      }
    }
    const std::vector<int>& members = groups_[gi].params;
    for (size_t i = 0; i < members.size(); ++i) {
      const ModelParam& mp = model_.params()[members[i]];
      at::Tensor whole;
      if (holder) {
        if (config_.stage < 3) {
          whole = full.narrow(0, g.offsets[i], mp.numel()).view(mp.shape);
        } else {
          // Every rank's piece of a parameter is ceil(numel / world) long, so its offset inside
          // each rank's partition is this rank's, g.offsets[i].
          std::vector<at::Tensor> pieces;
          for (int r = 0; r < world; ++r) {
            const PerParamPiece pc = PerParamShard(mp.numel(), world, r);
            pieces.push_back(full.narrow(0, r * ps + g.offsets[i], pc.valid));
          }
          whole = at::cat(pieces).view(mp.shape);
        }
      }
      if (expert) whole = GatherExperts(mp, whole, root);
      if (comm_.rank() == root) out[members[i]] = whole;
    }
  }
  return out;
}

std::vector<at::Tensor> Engine::GatherModule(int root) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> out(model_.params().size());
  for (size_t p = 0; p < model_.params().size(); ++p) {
    const ModelParam& mp = model_.params()[p];
    at::Tensor full = GatherParam(static_cast<int>(p)).detach();
    if (mp.expert()) full = GatherExperts(mp, full, root);
    if (comm_.rank() == root) out[p] = full.contiguous();
  }
  return out;
}

int64_t Engine::StateBytes() const {
  int64_t b = 0;
  for (const auto& g : state_) {
    for (const at::Tensor* t :
         {&g->flat_lp, &g->lp_part, &g->master, &g->exp_avg, &g->exp_avg_sq}) {
      if (t->defined()) b += t->numel() * static_cast<int64_t>(t->element_size());
    }
  }
  return b;
}

}  // namespace ucp::runtime
