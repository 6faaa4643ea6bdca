#!/usr/bin/env bash
# `make demo`: the product tour. Trains the tiny dense model (the fixtures' TinyLM) on 4 local
# ranks with ZeRO-2, saves a DeepSpeed checkpoint, converts it to a Universal Checkpoint, reshards
# that to dp 2, resumes 3 steps at dp 2 from the reshard and once more straight from the dp-4
# ZeRO folder (in-memory reshard), exports safetensors and inspects. Each step says what it did and
# how long it took. Usage: scripts/demo-tour.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: demo-tour.sh BUILD_DIR}
ucp=$build/cli/ucp
export UCP_TRAIN_BIN=$build/runtime/train/ucp-train
tmp=$(mktemp -d -t ucp_demo.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
step() {  # step "what" command...
  local what=$1; shift
  echo "== $what"
  local t0=$(date +%s%N)
  "$@"
  local ds=$(( ($(date +%s%N) - t0) / 100000000 ))  # tenths of a second
  echo "   ($((ds / 10)).$((ds % 10)) s)"
}
cat > "$tmp/model.json" <<'J'
{"model_type": "tinylm", "vocab_size": 61, "hidden_size": 24, "intermediate_size": 56,
 "num_hidden_layers": 2, "max_position_embeddings": 8}
J
config() {  # config DP: the fixtures' DeepSpeed config at dp DP (global batch 8)
  cat > "$tmp/ds_dp$1.json" <<J
{"train_batch_size": 8, "train_micro_batch_size_per_gpu": $((8 / $1)), "steps_per_print": 5,
 "gradient_clipping": 1.0, "zero_optimization": {"stage": 2},
 "optimizer": {"type": "AdamW", "params": {"lr": 0.01, "betas": [0.9, 0.95], "eps": 1e-8,
                                            "weight_decay": 0.05, "torch_adam": true}},
 "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": 0.0, "warmup_max_lr": 0.01,
                                              "warmup_num_steps": 3, "warmup_type": "linear"}}}
J
}
config 4; config 2
common=(--model-config "$tmp/model.json" --data recipe:1234 --no-fsync)
step "ucp train: 10 steps of ZeRO-2 on 4 local ranks, save global_step10" \
  "$ucp" train --nproc 4 --config "$tmp/ds_dp4.json" "${common[@]}" --train-steps 10 \
  --save "$tmp/ckpt"
step "ucp inspect: what was saved (DeepSpeed's files for ZeRO-2 at dp 4)" \
  "$ucp" inspect "$tmp/ckpt" --max-rows 4
step "ucp convert: ZeRO -> Universal Checkpoint" \
  "$ucp" convert "$tmp/ckpt" "$tmp/ucp" --no-fsync
step "ucp reshard: the UCP -> ZeRO-2 at dp 2" \
  "$ucp" reshard "$tmp/ucp" --dp 2 --out "$tmp/dp2" --no-fsync
step "ucp train: resume 3 steps at dp 2 from the resharded checkpoint" \
  "$ucp" train --nproc 2 --config "$tmp/ds_dp2.json" "${common[@]}" --train-steps 3 \
  --load "$tmp/dp2" --metrics-json "$tmp/a.json"
step "ucp train: resume 3 steps at dp 2 straight from the dp-4 ZeRO folder (in-memory reshard)" \
  "$ucp" train --nproc 2 --config "$tmp/ds_dp2.json" "${common[@]}" --train-steps 3 \
  --load "$tmp/ckpt" --metrics-json "$tmp/b.json"
echo "== the two resumes give the same losses (step: from the reshard, from the dp-4 folder):"
python3 - "$tmp/a.json" "$tmp/b.json" <<'P'
import json, sys
a, b = (json.load(open(p))["losses"] for p in sys.argv[1:])
for k in sorted(a, key=int):
    print(f"   step {k}: {a[k]:.6f}  {b[k]:.6f}")
sys.exit(0 if a == b else 1)
P
step "ucp export: the weights as safetensors" \
  "$ucp" export "$tmp/ckpt" --out "$tmp/weights" --no-fsync
step "ucp inspect: the exported weights" \
  "$ucp" inspect "$tmp/weights" --max-rows 4
