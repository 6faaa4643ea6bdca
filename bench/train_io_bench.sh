#!/usr/bin/env bash
# ucp train's save and load against the I/O floor for the same bytes, and memory per rank by ZeRO
# stage and dp.
#   Save / load: a TinyLM of ~100 M parameters (vocab 32000, dim 1024, hidden 4096, 8 blocks),
#   ZeRO-2 fp32 at dp 2, fresh init saved with --train-steps 0 (a 1.6 GB checkpoint: fp32 module,
#   masters, exp_avg, exp_avg_sq), then loaded back (--load, --train-steps 0). Floor: `dd` writing
#   the same number of bytes with fsync, and `cat` reading the checkpoint's files (page cache as
#   warm as for the load). Ratios > 1 are slower than the floor.
#   Memory: state bytes per rank (parameters, masters, moments) and peak RSS, stages 0-3 x dp 1/2/4,
#   on the bench model of train_bench.sh (3.1 M parameters), 2 steps.
# Usage: bench/train_io_bench.sh BUILD_DIR [DIR_FOR_THE_CHECKPOINT]
set -euo pipefail
build=${1:?usage: train_io_bench.sh BUILD_DIR [DIR]}
base=${2:-${TMPDIR:-/tmp}}
cmake --build "$build" --target ucp-train >/dev/null
tmp=$(mktemp -d "$base/ucp_train_io.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
train=$build/runtime/train/ucp-train
json() { python3 -c "import json,sys; print(json.load(open('$1'))$2)"; }
cat > "$tmp/big.json" <<'J'
{"model_type": "tinylm", "vocab_size": 32000, "hidden_size": 1024, "intermediate_size": 4096,
 "num_hidden_layers": 8, "max_position_embeddings": 16}
J
cat > "$tmp/ds.json" <<'J'
{"train_batch_size": 4, "train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": 2},
 "optimizer": {"type": "AdamW", "params": {"lr": 0.01, "torch_adam": true}}}
J
"$train" --nproc 2 --config "$tmp/ds.json" --model-config "$tmp/big.json" --train-steps 0 \
  --save "$tmp/ck" --metrics-json "$tmp/save.json" 2>/dev/null
bytes=$(du -sb "$tmp/ck" | cut -f1)
save=$(json "$tmp/save.json" "['save_seconds']")
t0=$(date +%s%N)
dd if=/dev/zero of="$tmp/floor.bin" bs=4M count=$((bytes / 4194304 + 1)) conv=fsync status=none
write_floor=$(python3 -c "print(($(date +%s%N) - $t0) / 1e9)")
rm -f "$tmp/floor.bin"
"$train" --nproc 2 --config "$tmp/ds.json" --model-config "$tmp/big.json" --train-steps 0 \
  --load "$tmp/ck" --metrics-json "$tmp/load.json" 2>/dev/null
load=$(json "$tmp/load.json" "['load_seconds']")
t0=$(date +%s%N)
cat "$tmp"/ck/*/* > /dev/null
read_floor=$(python3 -c "print(($(date +%s%N) - $t0) / 1e9)")
python3 - "$bytes" "$save" "$write_floor" "$load" "$read_floor" <<'P'
import sys
b, s, wf, l, rf = (float(x) for x in sys.argv[1:])
print(f"checkpoint {b/1e9:.2f} GB (ZeRO-2, dp 2, 100 M parameters)")
print(f"save {s:.2f} s vs write floor (dd, fsync) {wf:.2f} s: {s/wf:.2f}x")
print(f"load {l:.2f} s vs read floor (cat) {rf:.2f} s: {l/rf:.2f}x")
P
echo '{"model_type": "tinylm", "vocab_size": 4000, "hidden_size": 256, "intermediate_size": 1024,
 "num_hidden_layers": 4, "max_position_embeddings": 32}' > "$tmp/model.json"
echo "memory per rank (MiB): state = parameters + fp32 masters + Adam moments; peak RSS"
for stage in 0 1 2 3; do
  line="stage $stage:"
  for dp in 1 2 4; do
    echo "{\"train_batch_size\": 8, \"train_micro_batch_size_per_gpu\": $((8 / dp)),
      \"zero_optimization\": {\"stage\": $stage},
      \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.001, \"torch_adam\": true}}}" \
      > "$tmp/m.json"
    "$train" --nproc $dp --config "$tmp/m.json" --model-config "$tmp/model.json" --data recipe:1 \
      --train-steps 2 --metrics-json "$tmp/mm.json" 2>/dev/null
    line="$line  dp $dp $(json "$tmp/mm.json" "['state_bytes_per_rank_max']/2**20" | xargs printf '%.1f') / \
$(json "$tmp/mm.json" "['peak_rss_bytes_per_rank_max']/2**20" | xargs printf '%.0f')"
  done
  echo "$line"
done
