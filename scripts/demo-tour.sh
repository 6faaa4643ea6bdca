#!/usr/bin/env bash
# `make demo`: the product tour. Trains the tiny dense model (the fixtures' TinyLM) on 4 local
# ranks with ZeRO-2, saves a DeepSpeed checkpoint, converts it to a Universal Checkpoint, reshards
# that to dp 2, resumes 3 steps at dp 2 from the reshard and once more straight from the dp-4
# ZeRO folder (in-memory reshard), exports safetensors and inspects. Then the same with a tiny
# Mixtral-style mixture of experts under AutoEP: 4 ranks with the 4 experts split over them
# (autoep_size 4, tokens exchanged by all-to-all), saved in DeepSpeed's AutoEP layout, resumed at
# autoep_size 2 on 2 ranks straight from that folder. Each step says what it did and how long it
# took. Usage: scripts/demo-tour.sh BUILD_DIR
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

cat > "$tmp/moe.json" <<'J'
{"model_type": "mixtral", "vocab_size": 61, "hidden_size": 16, "intermediate_size": 12,
 "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
 "num_local_experts": 4, "num_experts_per_tok": 2, "max_position_embeddings": 8,
 "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "tie_word_embeddings": false}
J
moe_config() {  # moe_config DP EP
  python3 - "$tmp/ds_dp$1.json" "$2" > "$tmp/moe_dp$1.json" <<'P'
import json, sys
c = json.load(open(sys.argv[1]))
c["expert_parallel"] = {"enabled": True, "autoep_size": int(sys.argv[2]), "preset_model": "mixtral"}
print(json.dumps(c))
P
}
moe_config 4 4; moe_config 2 2
moe=(--model-config "$tmp/moe.json" --data recipe:1234 --no-fsync)
step "ucp train: a tiny Mixtral with AutoEP, 10 steps on 4 ranks (autoep_size 4: one expert each)" \
  "$ucp" train --nproc 4 --config "$tmp/moe_dp4.json" "${moe[@]}" --train-steps 10 \
  --save "$tmp/moe_ckpt"
step "ucp inspect: DeepSpeed's AutoEP layout (layer_*_expert_* files, ds_autoep_layers)" \
  "$ucp" inspect "$tmp/moe_ckpt" --max-rows 6
step "ucp train: resume 3 steps at autoep_size 2 on 2 ranks, straight from that folder" \
  "$ucp" train --nproc 2 --config "$tmp/moe_dp2.json" "${moe[@]}" --train-steps 3 \
  --load "$tmp/moe_ckpt"
