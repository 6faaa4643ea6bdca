#!/usr/bin/env bash
# AutoEP in `ucp train` on CPU ranks (docs/benchmarks/moe_cpu2c_202612.md):
#   (i)   tokens/s of one Mixtral-style MoE with AutoEP (ZeRO-2, experts split over autoep_size
#         = all ranks, tokens exchanged by all-to-all) against the same model with ZeRO-3-sharded
#         experts and no expert parallelism (autoep_size 1: every rank runs every expert, the
#         experts' weights gathered per layer) on the same ranks: DeepSpeed's headline comparison;
#   (ii)  the experts as one grouped GEMM (use_grouped_mm true) against a per-expert loop;
#   (iii) all-to-all bytes per step against the analytic value for uniform routing:
#         layers * micro-batches * 4 passes (dispatch and combine, forward and backward)
#         * tokens * top_k * (ep - 1) / ep * hidden * bytes per element.
# Model (env V H L E K I T B): vocab 512, hidden 256, 2 layers, 8 experts top-2, expert width
# 1024, seq 64, batch 8: the experts hold most of the FLOPs, as in a real MoE.
# Usage: bench/moe_bench.sh BUILD_DIR [RANKS] [STEPS]
set -euo pipefail
build=${1:?usage: moe_bench.sh BUILD_DIR [RANKS] [STEPS]}
ranks=${2:-2}
steps=${3:-6}
cmake --build "$build" --target ucp-train >/dev/null
tmp=$(mktemp -d -t ucp_moe_bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
V=${V:-512} H=${H:-256} L=${L:-2} E=${E:-8} K=${K:-2} I=${I:-1024} T=${T:-64} B=${B:-8}
cat > "$tmp/model.json" <<J
{"model_type": "mixtral", "vocab_size": $V, "hidden_size": $H, "intermediate_size": $I,
 "num_hidden_layers": $L, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
 "num_local_experts": $E, "num_experts_per_tok": $K, "max_position_embeddings": $T,
 "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "tie_word_embeddings": false}
J
run() {  # name stage ep grouped
  cat > "$tmp/$1.json" <<J
{"train_batch_size": $B, "train_micro_batch_size_per_gpu": $((B / ranks)), "gradient_clipping": 1.0,
 "zero_optimization": {"stage": $2}, "expert_parallel": {"enabled": true, "autoep_size": $3,
 "preset_model": "mixtral", "use_grouped_mm": $4},
 "optimizer": {"type": "AdamW", "params": {"lr": 0.001, "torch_adam": true}}}
J
  "$build/runtime/train/ucp-train" --nproc "$ranks" --config "$tmp/$1.json" \
    --model-config "$tmp/model.json" --data recipe:1234 --train-steps "$steps" \
    --metrics-json "$tmp/$1.out.json" 2>/dev/null
}
median() {  # median tokens/s over steps 2.. of $1
  python3 - "$1" "$B" "$T" <<'P'
import json, sys, statistics
d = json.load(open(sys.argv[1]))["step_ms"]
ms = statistics.median(float(d[k]) for k in d if int(k) >= 2)
print(f"{int(sys.argv[2]) * int(sys.argv[3]) / (ms / 1000):.0f}")
P
}
run autoep 2 "$ranks" true
run zero3 3 1 true
run loop 2 "$ranks" false
ep_tps=$(median "$tmp/autoep.out.json"); z3_tps=$(median "$tmp/zero3.out.json")
loop_tps=$(median "$tmp/loop.out.json")
echo "ranks $ranks, Mixtral-style E=$E top-$K hidden $H width $I, $L layers, $((B * T)) tokens/step"
echo "AutoEP (ZeRO-2, ep $ranks):            $ep_tps tokens/s"
echo "ZeRO-3 experts, no EP (autoep_size 1): $z3_tps tokens/s"
echo "AutoEP / ZeRO-3-no-EP: $(python3 -c "print(f'{$ep_tps/$z3_tps:.2f}')")x"
echo "per-expert loop (use_grouped_mm false): $loop_tps tokens/s; grouped / loop: $(python3 -c "print(f'{$ep_tps/$loop_tps:.2f}')")x"
python3 - "$tmp/autoep.out.json" "$steps" "$ranks" <<P
import json, sys
m = json.load(open(sys.argv[1])); steps = int(sys.argv[2]); ep = int(sys.argv[3])
measured = m["all_to_all_bytes"] / steps
analytic = $L * 4 * $B * $T * $K * (ep - 1) / ep * $H * 4
print(f"all-to-all bytes/step: measured {measured:.0f}, analytic (uniform routing) {analytic:.0f}, "
      f"ratio {measured / analytic:.2f}")
P
