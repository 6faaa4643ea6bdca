#!/usr/bin/env bash
# AutoSP (Ulysses) peak memory per rank vs sequence length, selective activation checkpointing
# off and on (docs/benchmarks/autosp_memory_cpu2c_202612.md): `ucp train --nproc SP` with
# "sequence_parallel_size": SP (dp 1), a Llama with 8 heads / 2 KV heads of 4 (hidden 32, L
# layers, vocab 53), one sequence per step, ZeRO-2 fp32, the recipe data; 2 steps (1 from 8192).
# The figure is peak_rss_bytes_per_rank_max of the metrics JSON (LibTorch's ~230 MiB included).
# A run is skipped when its estimated total (ranks x per-rank bytes) is over MemAvailable / 1.5;
# the estimate is the base plus [B, heads/sp, S, S] fp32 buffers: 4 of them off (kept softmax of
# each layer plus the forward's temporaries at L = 2), 2 on.
# Prints one TSV row per run: sp S mode peak_rss_mib ms_per_step loss_step1.
# Usage: [L=layers] [MODES="off on"] bench/autosp_memory_bench.sh BUILD_DIR ["S1 S2 ..."] ["SP1 ..."]
set -euo pipefail
build=${1:?usage: autosp_memory_bench.sh BUILD_DIR [LENGTHS] [SPS]}
lengths=${2:-1024 2048 4096 8192}
sps=${3:-1 2 4}
L=${L:-2}
modes=${MODES:-off on}
cmake --build "$build" --target ucp-train >/dev/null
train="$build/runtime/train/ucp-train"
tmp=$(mktemp -d -t ucp_autosp_mem.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
max=0
for s in $lengths; do ((s > max)) && max=$s; done
cat > "$tmp/model.json" <<J
{"model_type": "llama", "vocab_size": 53, "hidden_size": 32, "intermediate_size": 40,
 "num_hidden_layers": $L, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 4,
 "max_position_embeddings": $max, "tie_word_embeddings": false}
J
printf 'sp\tS\tmode\tpeak_rss_mib\tms_per_step\tloss_step1\n'
for sp in $sps; do
  cat > "$tmp/ds$sp.json" <<J
{"train_batch_size": 1, "sequence_parallel_size": $sp, "zero_optimization": {"stage": 2},
 "optimizer": {"type": "AdamW", "params": {"lr": 0.01}}}
J
  for s in $lengths; do
    for mode in $modes; do
      buffers=$([[ $mode == off ]] && echo 4 || echo 2)
      est_mib=$((230 + buffers * 8 / sp * s / 1024 * s / 1024 * 4))
      avail_mib=$(($(awk '/MemAvailable/ {print $2}' /proc/meminfo) / 1024))
      if ((est_mib * sp * 3 / 2 > avail_mib)); then
        printf '%s\t%s\t%s\tskipped (~%s MiB per rank expected)\t-\t-\n' "$sp" "$s" "$mode" "$est_mib"
        continue
      fi
      steps=$((s >= 8192 ? 1 : 2))
      flag=()
      [[ $mode == on ]] && flag=(--activation-checkpointing)
      "$train" --nproc "$sp" --config "$tmp/ds$sp.json" --model-config "$tmp/model.json" \
        --data recipe:5 --seq-len "$s" --train-steps "$steps" --no-fsync \
        --metrics-json "$tmp/m.json" "${flag[@]}" 2>"$tmp/err" >/dev/null ||
        { printf '%s\t%s\t%s\tfailed: %s\n' "$sp" "$s" "$mode" "$(tail -1 "$tmp/err")"; continue; }
      python3 - "$tmp/m.json" "$sp" "$s" "$mode" <<'P'
import json, sys
m = json.load(open(sys.argv[1]))
print("\t".join([sys.argv[2], sys.argv[3], sys.argv[4],
                 str(round(m["peak_rss_bytes_per_rank_max"] / 2**20)),
                 str(round(m["ms_per_step"])), repr(m["losses"]["1"])]))
P
    done
  done
done
