#!/usr/bin/env bash
# Step time of `ucp train` (ZeRO-2, fp32) on the dense TinyLM at dp 1/2/4 against
#   (i)  a plain single-process LibTorch loop on the same model and batches (plain_loop_bench:
#        autograd, clip_grad_norm_, torch::optim::AdamW; no engine, no process group), and
#   (ii) DeepSpeed itself on the same ranks, model and batches, when DS_CASE names a harness
#        ds_case.py that records per-step times (step_seconds) and has the "medium" variant
#        (docs/benchmarks/train_cpu2c_202612.md says how; DeepSpeed's environment from
#        the harness's env.sh).
# Model: vocab 4000, dim 256, hidden 1024, 4 blocks, seq 32, global batch 8 (3.1 M parameters).
# Each run: STEPS steps (default 5); the median of steps 2..STEPS is reported. Prints ratios.
# Usage: bench/train_bench.sh BUILD_DIR [STEPS]
set -euo pipefail
build=${1:?usage: train_bench.sh BUILD_DIR [STEPS]}
steps=${2:-5}
cmake --build "$build" --target plain_loop_bench ucp-train >/dev/null
tmp=$(mktemp -d -t ucp_train_bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
V=4000 D=256 H=1024 L=4 T=32 B=8
median() {  # median of steps 2.. of a {"step": ms} JSON object in file $1 key $2 (scale $3)
  python3 - "$1" "$2" "$3" <<'P'
import json, sys, statistics
d = json.load(open(sys.argv[1]))[sys.argv[2]]
v = [float(d[k]) * float(sys.argv[3]) for k in d if int(k) >= 2]
print(f"{statistics.median(v):.1f}")
P
}
echo "{\"model_type\": \"tinylm\", \"vocab_size\": $V, \"hidden_size\": $D, \"intermediate_size\": $H,
 \"num_hidden_layers\": $L, \"max_position_embeddings\": $T}" > "$tmp/model.json"
"$build/runtime/train/plain_loop_bench" $V $D $H $L $T $B "$steps" 2>/dev/null > "$tmp/plain.json"
plain=$(median "$tmp/plain.json" step_ms 1)
echo "plain LibTorch loop, 1 process: $plain ms/step"
for dp in 1 2 4; do
  cat > "$tmp/ds$dp.json" <<J
{"train_batch_size": $B, "train_micro_batch_size_per_gpu": $((B / dp)), "gradient_clipping": 1.0,
 "zero_optimization": {"stage": 2},
 "optimizer": {"type": "AdamW", "params": {"lr": 0.01, "betas": [0.9, 0.95], "eps": 1e-8,
                                            "weight_decay": 0.05, "torch_adam": true}}}
J
  "$build/runtime/train/ucp-train" --nproc $dp --config "$tmp/ds$dp.json" --model-config "$tmp/model.json" \
    --data recipe:1234 --train-steps "$steps" --metrics-json "$tmp/ucp$dp.json" 2>/dev/null
  ours=$(median "$tmp/ucp$dp.json" step_ms 1)
  line="ucp train ZeRO-2 dp $dp: $ours ms/step ($(python3 -c "print(f'{$ours/$plain:.2f}')")x the plain loop)"
  if [ -n "${DS_CASE:-}" ]; then
    env DS_ACCELERATOR=cpu DS_BUILD_OPS=0 DS_HARNESS_TORCH_COMPAT=1 PYTHONPATH="$DS_SHIMS:$DEEPSPEED_SRC" \
      OMP_NUM_THREADS=1 /usr/bin/python3.11 "$DS_CASE" --out "$tmp/ds_out$dp" --stage 2 --dtype fp32 \
      --dp $dp --steps "$steps" --extra-steps 0 --seed 1234 --variant medium >/dev/null 2>&1
    theirs=$(median "$tmp/ds_out$dp/run_log.json" step_seconds 1000)
    line="$line; DeepSpeed: $theirs ms/step; ucp/DeepSpeed $(python3 -c "print(f'{$ours/$theirs:.2f}')")"
  fi
  echo "$line"
done
