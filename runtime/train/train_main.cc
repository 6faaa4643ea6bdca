// ucp-train: the training runtime's executable (`ucp train` execs it, so the toolkit never pays
// LibTorch's start-up). One process per rank: started by `--nproc N` (converters/launch: N local
// ranks on 127.0.0.1) or by torchrun / srun style variables (RANK, WORLD_SIZE, MASTER_ADDR, ...).
// See docs/runtime.md.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "converters/launch/launcher.h"
#include "converters/launch/rank_env.h"
#include "formats/base/status.h"
#include "nlohmann/json.hpp"
#include "runtime/checkpoint/load.h"
#include "runtime/checkpoint/save.h"
#include "runtime/config/ds_config.h"
#include "runtime/config/lr_schedule.h"
#include "runtime/config/model_config.h"
#include "runtime/model/moe_decoder.h"
#include "runtime/moe/all_to_all.h"
#include "runtime/train/batches.h"
#include "runtime/train/csv_monitor.h"
#include "runtime/train/expert_setup.h"
#include "runtime/train/model_factory.h"

namespace ucp::runtime {
namespace {

using converters::launch::LaunchLocal;
using converters::launch::LaunchOptions;
using converters::launch::LaunchResult;
using converters::launch::RankEnv;
using converters::launch::ReadRankEnv;

constexpr char kUsage[] = R"(usage: ucp train [--nproc N] --config DS_JSON --model-config MODEL_JSON
                 --data (TOKENS_FILE | INDEXED_PREFIX | recipe:SEED) --train-steps K [options]

Trains a model with DeepSpeed's ZeRO stage 0-3 (the config's zero_optimization.stage) on N
data-parallel ranks and saves DeepSpeed-format checkpoints; resumes from a DeepSpeed ZeRO folder,
a UCP or weights at any dp or stage.

  --nproc N              start N local ranks (127.0.0.1, a free port); without it the ranks come
                         from RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT (torchrun --no-python, srun)
  --config FILE          DeepSpeed JSON (batch sizes, optimizer, scheduler, bf16, zero_optimization)
  --model-config FILE    Hugging Face style config.json: model_type tinylm (the fixture model) or
                         llama / qwen2 / qwen3 / mistral (dense decoders)
  --weights PATH         initial weights (safetensors file or folder, .bin, UCP, ZeRO folder)
  --data SPEC            nanoGPT token file (uint16; --data-dtype uint32), indexed dataset prefix
                         (P.bin + P.idx), or recipe:SEED (the fixtures' synthetic task)
  --seq-len T            tokens per sample (default: max_position_embeddings)
  --seed S               init and sampler seed (default 1234)
  --load DIR             resume: a save folder (latest), tag folder, or UCP folder
  --load-tag TAG         the tag folder to load instead of `latest`
  --load-module-only     load weights only (fresh optimizer, step 0)
  --train-steps K        optimizer steps to run (0 with --load and --save re-saves at once)
  --save DIR             save folder; --save-tag TAG (default global_step<last step>)
  --save-interval N      also save every N steps
  --metrics-json FILE    {"losses": {"<step>": loss}, "lr": ..., "grad_norm": ..., timings, memory}
  --threads N            intra-op threads per rank (default 1)
  --comm-timeout S       seconds a collective may wait for a peer (default 300)
  --no-bind              do not pin each local rank to its share of the CPUs
  --no-fsync             do not fsync checkpoint files (tests)
  --activation-checkpointing
                         selective activation checkpointing of every model unit (as the
                         config's `activation_checkpointing` block): each unit's forward runs
                         again in backward, attention outputs kept, so no [S, S] attention
                         activation lives from forward to backward; the same numbers, bitwise
  --sp-grad-divisor M    sequence parallelism (`sequence_parallel_size` > 1) at ZeRO 0-2:
                         `deepspeed` (default) divides the SP-summed gradients by dp as DeepSpeed
                         does, i.e. sp times the mean gradient (the same checkpoints and loss
                         curves as DeepSpeed, whose Adam barely sees the factor; clipping and the
                         reported norm do); `exact` divides by dp * sp, the mean gradient.
)";

struct Args {
  int nproc = 0;
  std::string config, model_config, weights, data, data_dtype, load, load_tag, save, save_tag,
      metrics_json, sp_grad_divisor = "deepspeed";
  int64_t seq_len = 0, train_steps = -1, save_interval = 0;
  uint64_t seed = 1234;
  bool load_module_only = false, fsync = true, bind = true, activation_checkpointing = false;
  int threads = 1, comm_timeout = 300;
};

absl::Status UsageError(const std::string& msg) { return absl::InvalidArgumentError(msg); }

absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& argv) {
  Args a;
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& f = argv[i];
    auto value = [&]() -> absl::StatusOr<std::string> {
      if (i + 1 >= argv.size()) return UsageError(f + " needs a value");
      return argv[++i];
    };
    auto integer = [&](int64_t lo) -> absl::StatusOr<int64_t> {
      auto v = value();
      if (!v.ok()) return v.status();
      int64_t n = 0;
      if (!absl::SimpleAtoi(*v, &n) || n < lo)
        return UsageError(absl::StrCat(f, ": expected an integer >= ", lo, ", got '", *v, "'"));
      return n;
    };
#define UCP_STR(flag, field)        \
  if (f == flag) {                  \
    auto v = value();               \
    if (!v.ok()) return v.status(); \
    a.field = *v;                   \
    continue;                       \
  }
#define UCP_INT(flag, field, lo)                  \
  if (f == flag) {                                \
    auto v = integer(lo);                         \
    if (!v.ok()) return v.status();               \
    a.field = static_cast<decltype(a.field)>(*v); \
    continue;                                     \
  }
    UCP_STR("--config", config)
    UCP_STR("--model-config", model_config)
    UCP_STR("--weights", weights)
    UCP_STR("--data", data)
    UCP_STR("--data-dtype", data_dtype)
    UCP_STR("--load", load)
    UCP_STR("--load-tag", load_tag)
    UCP_STR("--save", save)
    UCP_STR("--save-tag", save_tag)
    UCP_STR("--metrics-json", metrics_json)
    UCP_STR("--sp-grad-divisor", sp_grad_divisor)
    UCP_INT("--nproc", nproc, 1)
    UCP_INT("--seq-len", seq_len, 1)
    UCP_INT("--seed", seed, 0)
    UCP_INT("--train-steps", train_steps, 0)
    UCP_INT("--save-interval", save_interval, 1)
    UCP_INT("--threads", threads, 1)
    UCP_INT("--comm-timeout", comm_timeout, 1)
#undef UCP_STR
#undef UCP_INT
    if (f == "--load-module-only") {
      a.load_module_only = true;
    } else if (f == "--no-fsync") {
      a.fsync = false;
    } else if (f == "--no-bind") {
      a.bind = false;
    } else if (f == "--activation-checkpointing") {
      a.activation_checkpointing = true;
    } else {
      return UsageError(absl::StrCat("unknown option '", f, "' (see --help)"));
    }
  }
  if (a.sp_grad_divisor != "deepspeed" && a.sp_grad_divisor != "exact")
    return UsageError("--sp-grad-divisor is `deepspeed` or `exact`, got '" + a.sp_grad_divisor +
                      "'");
  if (a.config.empty()) return UsageError("--config is required");
  if (a.model_config.empty()) return UsageError("--model-config is required");
  if (a.data.empty() && a.train_steps != 0) return UsageError("--data is required");
  if (a.train_steps < 0) return UsageError("--train-steps is required");
  if (a.load_module_only && a.load.empty()) return UsageError("--load-module-only needs --load");
  if (!a.weights.empty() && !a.load.empty())
    return UsageError("--weights and --load both give the initial state: pick one");
  if (!a.save_tag.empty() && a.save.empty()) return UsageError("--save-tag needs --save");
  if (a.save_interval > 0 && a.save.empty()) return UsageError("--save-interval needs --save");
  return a;
}

// Rank 0 prints; every rank fails alike.
struct Log {
  int rank = 0;
  template <typename... T>
  void Line(const T&... parts) const {
    if (rank == 0) std::fprintf(stderr, "%s\n", absl::StrCat(parts...).c_str());
  }
};

// Pins this rank to its share of the CPUs the process may use (rank r of n local ranks: the r-th
// block of cpus/n of them, or cpu r mod cpus when there are more ranks than cpus). Without it the
// scheduler moves ranks between cores: 2 ranks on 2 cores ran 8-20 % slower (bench/).
void BindToCores(int local_rank, int local_world) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (local_world <= 1 || sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  }
  if (cpus.empty()) return;
  cpu_set_t mine;
  CPU_ZERO(&mine);
  const int n = static_cast<int>(cpus.size());
  if (local_world >= n) {
    CPU_SET(cpus[local_rank % n], &mine);
  } else {
    const int per = n / local_world;
    for (int i = local_rank * per; i < (local_rank + 1) * per; ++i) CPU_SET(cpus[i], &mine);
  }
  sched_setaffinity(0, sizeof(mine), &mine);
}

int64_t PeakRssBytes() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

absl::Status Train(const Args& args, const RankEnv& env) {
  Log log{env.rank};
  if (args.bind) {
    const char* lw = std::getenv("LOCAL_WORLD_SIZE");
    BindToCores(env.local_rank, lw != nullptr ? std::atoi(lw) : 1);
  }
  at::set_num_threads(args.threads);
  UCP_ASSIGN_OR_RETURN(TrainConfig cfg, LoadTrainConfig(args.config, env.world_size));
  UCP_ASSIGN_OR_RETURN(ModelConfig mcfg, LoadModelConfig(args.model_config));
  UCP_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                       MakeModel(mcfg, cfg, env.world_size, env.rank));
  const int autoep_size = AutoEpSize(mcfg, cfg);
  // Ranks: rank = (dp_rank * sp + sp_rank) * tp + tp_rank. TP innermost (consecutive, §2.1: its
  // collectives are per layer and the largest), then the SP positions of one sample (§3.1), then
  // data parallelism.
  const int tp = cfg.autotp_size, sp = cfg.sp_size, dp_size = env.world_size / tp / sp,
            dp_rank = env.rank / (tp * sp), sp_rank = env.rank / tp % sp;
  if (sp > 1 && mcfg.is_tinylm())
    return absl::UnimplementedError(
        absl::StrCat("`sequence_parallel_size` ", sp,
                     ": AutoSP is implemented for the Hugging Face decoders (llama, mistral, "
                     "qwen2, qwen3, and with AutoEP mixtral, qwen3_moe, deepseek), not model_type "
                     "\"",
                     mcfg.model_type, "\""));
  if (sp > 1) UCP_RETURN_IF_ERROR(CheckSpHeads(mcfg, cfg, tp, sp));
  if (tp > 1 && cfg.zero.stage == 3)
    return absl::UnimplementedError(
        "`tensor_parallel.autotp_size` > 1 with `zero_optimization.stage` 3: ucp train runs "
        "AutoTP with ZeRO 0-2");
  const int64_t seq_len = args.seq_len > 0 ? args.seq_len : mcfg.max_position_embeddings;
  if (sp > 1 && seq_len % sp != 0)
    return UsageError(absl::StrCat("--seq-len ", seq_len, " is not divisible by ",
                                   "`sequence_parallel_size` ", sp));
  if (seq_len > mcfg.max_position_embeddings)
    return UsageError(absl::StrCat("--seq-len ", seq_len,
                                   " is over the model's max_position_embeddings ",
                                   mcfg.max_position_embeddings));

  // Initial state: a checkpoint (its groups), weights, or a seeded init.
  OpenedCheckpoint ck;
  const bool from_checkpoint = !args.load.empty() || !args.weights.empty();
  const bool module_only = args.load_module_only || !args.weights.empty();
  if (from_checkpoint) {
    LoadRequest rq;
    rq.path = args.load.empty() ? args.weights : args.load;
    rq.tag = args.load_tag;
    rq.prefer_universal = cfg.load_universal;
    rq.module_only = module_only;
    UCP_ASSIGN_OR_RETURN(ck, OpenForModel(rq, *model));
    log.Line("ucp train: loading ", ck.description, module_only ? " (weights only)" : "");
  }
  std::vector<OptimGroup> groups =
      from_checkpoint && !module_only
          ? ck.groups
          : SplitExpertGroups(DefaultGroups(*model, cfg.optimizer.weight_decay), *model,
                              autoep_size);

  UCP_ASSIGN_OR_RETURN(EngineConfig ecfg, MakeEngineConfig(cfg));
  if (args.activation_checkpointing) ecfg.activation_checkpointing = true;
  CommOptions co;
  co.rank = env.rank;
  co.world_size = env.world_size;
  co.master_addr = env.master_addr.empty() ? "127.0.0.1" : env.master_addr;
  co.master_port = env.master_port;
  co.timeout = std::chrono::seconds(args.comm_timeout);
  std::unique_ptr<Comm> comm = Comm::Create(co);
  ExpertGroups experts;
  if (mcfg.is_moe()) {
    experts = MakeExpertGroups(*comm, autoep_size, cfg.use_data_before_expert_parallelism);
    static_cast<MoeModel&>(*model).SetExpertComm(experts.ep.get());
  }
  // AutoTP (§2.1): TP groups of consecutive ranks, data-parallel groups of the same TP lane;
  // the engine partitions and reduces over the data-parallel group.
  std::unique_ptr<Comm> tp_comm, dp_comm;
  TpGroup tp_group;
  if (tp > 1) {
    std::vector<int> tp_ranks, dp_ranks;
    const int tp_block = env.rank / tp;
    for (int r = tp_block * tp; r < (tp_block + 1) * tp; ++r) tp_ranks.push_back(r);
    // With SP, the SP ranks of a lane are data parallel to ZeRO too (§3.1's SDP group).
    for (int r = env.rank % tp; r < env.world_size; r += tp) dp_ranks.push_back(r);
    tp_comm = comm->Subgroup(tp_ranks, absl::StrCat("tp_", tp_block));
    dp_comm = comm->Subgroup(dp_ranks, absl::StrCat("dp_", env.rank % tp));
    tp_group = TpGroup{tp_comm.get(), env.rank % tp, tp};
    model->SetTpGroup(tp_group);
  }
  // AutoSP (§3.1): SP groups of consecutive ranks (of one TP lane under AutoTP); ZeRO partitions
  // and reduces over all ranks of the lane.
  std::unique_ptr<Comm> sp_comm;
  if (sp > 1) {
    std::vector<int> sp_ranks;
    for (int s = 0; s < sp; ++s) sp_ranks.push_back((dp_rank * sp + s) * tp + env.rank % tp);
    sp_comm = comm->Subgroup(sp_ranks, absl::StrCat("sp_", dp_rank, "_", env.rank % tp));
    model->SetSpGroup(TpGroup{sp_comm.get(), sp_rank, sp});
    if (args.sp_grad_divisor == "deepspeed" && cfg.zero.stage < 3) ecfg.sp_grad_quirk = sp;
  }
  Engine engine(*model, dp_comm ? *dp_comm : *comm, ecfg, groups, experts.comms(), tp_group);
  int64_t global_steps = 0, global_samples = 0, skipped = 0, last_it = -1;
  double load_seconds = 0;
  nlohmann::ordered_json client = nlohmann::ordered_json::object();
  if (from_checkpoint) {
    const auto t0 = std::chrono::steady_clock::now();
    UCP_RETURN_IF_ERROR(LoadInto(ck, engine, module_only));
    comm->Barrier();
    load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!module_only) {
      global_steps = ck.global_steps;
      global_samples = ck.global_samples;
      skipped = ck.skipped_steps;
      last_it = ck.lr_last_batch_iteration;
      client = ck.client_state;
    }
    ck.source.reset();
  } else {
    for (size_t i = 0; i < model->params().size(); ++i)
      engine.SetParam(static_cast<int>(i), model->InitialValue(static_cast<int>(i), args.seed));
  }

  std::unique_ptr<BatchSource> data;
  if (args.train_steps > 0) {
    UCP_ASSIGN_OR_RETURN(
        data, OpenBatches(args.data, args.data_dtype, args.seed, mcfg.vocab_size, seq_len));
    log.Line(
        "ucp train: ", env.world_size, " rank(s), ZeRO-", cfg.zero.stage, ", ",
        PrecisionName(cfg.precision), ", ", model->type(), " (", TrainableCount(*model),
        " trainable parameters", mcfg.is_moe() ? absl::StrCat(", AutoEP ep ", autoep_size) : "",
        tp > 1 ? absl::StrCat(", AutoTP tp ", tp, " x dp ", dp_size) : "",
        sp > 1 ? absl::StrCat(", AutoSP sp ", sp, " x dp ", dp_size) : "",
        ecfg.activation_checkpointing ? ", selective activation checkpointing" : "", "), data ",
        data->description(), ", batch ", cfg.train_batch_size, " = ", cfg.micro_batch_per_gpu,
        " x ", cfg.gradient_accumulation_steps, " x ", dp_size, ", seq ", seq_len);
  }

  nlohmann::json metrics = {{"losses", nlohmann::json::object()},
                            {"lr", nlohmann::json::object()},
                            {"grad_norm", nlohmann::json::object()},
                            {"step_ms", nlohmann::json::object()}};
  const double base_lr = cfg.optimizer.lr;
  auto save = [&](const std::string& tag) -> absl::Status {
    SaveRequest s;
    s.save_dir = args.save;
    s.tag = tag.empty() ? absl::StrCat("global_step", global_steps) : tag;
    s.global_steps = global_steps;
    s.global_samples = global_samples;
    s.skipped_steps = skipped;
    s.lr_last_batch_iteration = last_it;
    s.group_lr.assign(engine.groups().size(), ScheduledLr(cfg.scheduler, base_lr, last_it));
    s.ds_config = cfg.raw;
    s.client_state = client;
    // As the fixtures' client saves it: ds_to_universal (and `ucp convert`) need the key.
    if (!s.client_state.contains("universal_checkpoint_info"))
      s.client_state["universal_checkpoint_info"] = nlohmann::ordered_json::object();
    s.client_state["iteration"] = global_steps;
    s.fsync = args.fsync;
    if (mcfg.is_moe()) {
      s.autoep_layers = AutoEpLayersRecord(*model, cfg.zero.stage, env.world_size);
      s.autoep_size = autoep_size;
      s.use_data_before_expert_parallelism = cfg.use_data_before_expert_parallelism;
    }
    const auto t0 = std::chrono::steady_clock::now();
    UCP_RETURN_IF_ERROR(SaveCheckpoint(engine, s));
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log.Line("ucp train: saved ", args.save, "/", s.tag, " in ", absl::StrFormat("%.2f", sec),
             " s");
    metrics["save_seconds"] = sec;
    return absl::OkStatus();
  };

  CsvMonitor csv = cfg.csv_monitor.enabled && env.rank == 0
                       ? CsvMonitor(cfg.csv_monitor.output_path, cfg.csv_monitor.job_name)
                       : CsvMonitor("", "");
  double train_seconds = 0;
  int64_t tokens = 0;
  for (int64_t k = 0; k < args.train_steps; ++k) {
    const int64_t step = global_steps + 1;
    const double lr = ScheduledLr(cfg.scheduler, base_lr, last_it);
    UCP_ASSIGN_OR_RETURN(auto micro,
                         data->RankMicroBatches(step, cfg.train_batch_size, cfg.micro_batch_per_gpu,
                                                dp_rank, dp_size));
    if (sp > 1) {  // this SP rank's positions of the group's rows (inputs and aligned labels)
      const int64_t part = seq_len / sp, at = sp_rank * part;
      for (auto& [x, y] : micro) {
        x = x.narrow(1, at, part).contiguous();
        y = y.narrow(1, at, part).contiguous();
      }
    }
    comm->Barrier();  // time the step alone, as the harness times DeepSpeed's
    const auto t0 = std::chrono::steady_clock::now();
    StepResult r = engine.Step(micro, lr);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    train_seconds += ms / 1000;
    tokens += cfg.train_batch_size * seq_len;
    global_steps = step;
    global_samples += cfg.train_batch_size;
    if (r.skipped) {
      ++skipped;
    } else {
      ++last_it;
    }
    const std::string key = std::to_string(step);
    metrics["losses"][key] = r.loss;
    metrics["lr"][key] = lr;
    metrics["grad_norm"][key] = r.grad_norm;
    metrics["step_ms"][key] = ms;
    UCP_RETURN_IF_ERROR(csv.Write("Train/Samples/lr", global_samples, lr));
    UCP_RETURN_IF_ERROR(csv.Write("Train/Samples/train_loss", global_samples, r.loss));
    if ((cfg.steps_per_print > 0 && step % cfg.steps_per_print == 0) || k + 1 == args.train_steps)
      log.Line(
          absl::StrFormat("step %lld loss %.6f lr %.3g grad_norm %.4f %s%.0f tokens/s %.1f ms/step",
                          static_cast<long long>(step), r.loss, lr, r.grad_norm,
                          r.skipped ? "(skipped: overflow) " : "",
                          cfg.train_batch_size * seq_len / (ms / 1000), ms));
    if (args.save_interval > 0 && step % args.save_interval == 0 && k + 1 < args.train_steps)
      UCP_RETURN_IF_ERROR(save(""));
  }
  if (!args.save.empty()) UCP_RETURN_IF_ERROR(save(args.save_tag));
  metrics["world_size"] = env.world_size;
  if (from_checkpoint) metrics["load_seconds"] = load_seconds;
  metrics["zero_stage"] = cfg.zero.stage;
  metrics["activation_checkpointing"] = ecfg.activation_checkpointing;
  metrics["train_seconds"] = train_seconds;
  metrics["tokens_per_second"] = train_seconds > 0 ? tokens / train_seconds : 0.0;
  metrics["ms_per_step"] = args.train_steps > 0 ? 1000 * train_seconds / args.train_steps : 0.0;
  // Memory per rank: what the engine holds (parameters, masters, moments) and the process peak.
  at::Tensor mem = at::empty({2}, at::TensorOptions().dtype(at::kDouble));
  mem[0] = static_cast<double>(engine.StateBytes());
  mem[1] = static_cast<double>(PeakRssBytes());
  comm->AllReduceMax(mem);
  metrics["state_bytes_per_rank_max"] = mem[0].item<double>();
  metrics["peak_rss_bytes_per_rank_max"] = mem[1].item<double>();
  metrics["global_steps"] = global_steps;
  if (mcfg.is_moe() || sp > 1) {
    // Token (AutoEP) and Ulysses (AutoSP) all-to-all traffic, summed over ranks
    // (bench/moe_bench.sh, docs/benchmarks/autosp_memory_cpu2c_202612.md).
    at::Tensor a2a = at::empty({1}, at::TensorOptions().dtype(at::kDouble))
                         .fill_(static_cast<double>(AllToAllBytesSent()));
    comm->AllReduceSum(a2a);
    metrics["all_to_all_bytes"] = a2a.item<double>();
  }
  if (env.rank == 0 && !args.metrics_json.empty()) {
    std::ofstream f(args.metrics_json);
    f << metrics.dump(1) << "\n";
    if (!f) return absl::InternalError("cannot write " + args.metrics_json);
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  std::vector<std::string> argv_s(argv, argv + argc);
  for (const std::string& a : argv_s) {
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  absl::StatusOr<Args> args = ParseArgs(argv_s);
  if (!args.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(args.status().message()).c_str());
    return 2;
  }
  if (args->nproc > 0 && std::getenv("UCP_TRAIN_LAUNCHED") == nullptr) {
    LaunchOptions lo;
    lo.nproc = args->nproc;
    lo.name = "ucp train";
    lo.launched_variable = "UCP_TRAIN_LAUNCHED";
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    lo.argv.push_back(n > 0 ? std::string(self, n) : argv_s[0]);
    for (size_t i = 1; i < argv_s.size(); ++i) {
      if (argv_s[i] == "--nproc") {
        ++i;
        continue;
      }
      lo.argv.push_back(argv_s[i]);
    }
    absl::StatusOr<LaunchResult> r = LaunchLocal(lo);
    if (!r.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(r.status().message()).c_str());
      return 1;
    }
    if (r->exit_code != 0 && !r->message.empty())
      std::fprintf(stderr, "error: %s\n", r->message.c_str());
    return r->exit_code;
  }
  absl::StatusOr<RankEnv> env = ReadRankEnv({.require_local_rank = true});
  if (!env.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(env.status().message()).c_str());
    return 2;
  }
  absl::Status st;
  try {
    st = Train(*args, *env);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    st = absl::InternalError(msg);
  }
  if (!st.ok()) {
    std::fprintf(stderr, "error: rank %d: %s\n", env->rank, std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace ucp::runtime

int main(int argc, char** argv) { return ucp::runtime::Main(argc, argv); }
