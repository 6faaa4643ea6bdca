#!/usr/bin/env bash
# run_dist_convert_bench.sh BUILD_DIR [CHECKPOINT_TAG_DIR] [OUT_DIR]: `ucp convert --distributed`
# of the 3.2 GB ZeRO-2 dp=4 checkpoint (make_zero2_checkpoint, run_convert_bench.sh makes it) on
# 1, 2 and 4 local ranks (processes on 127.0.0.1 with torchrun's variables), fsync on, after
# `sync`, against the write floor (dd of the output's bytes with conv=fdatasync) of the same run.
# Prints one row per case: name wall_s. Needs about 2x the input's size free in OUT_DIR.
set -euo pipefail
BUILD="$(cd "$1" && pwd)"
TAG="${2:-/tmp/ucp-convert-bench/zero2_dp4_baseline/global_step1}"
DIR="${3:-/tmp/ucp-dist-bench}"
UCP="$BUILD/cli/ucp"
mkdir -p "$DIR"
cat "$TAG"/*.pt >/dev/null  # warm the page cache, as run_convert_bench.sh
now() { date +%s.%N; }
run_ranks() {  # N
  local n=$1 port=$((29700 + RANDOM % 200)) pids=()
  for ((r = 0; r < n; r++)); do
    RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      "$UCP" convert "$TAG" "$DIR/out" --distributed >"$DIR/rank$r.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
}
for n in 1 2 4; do
  rm -rf "$DIR/out"
  sync
  t0=$(now)
  if [[ $n == 1 ]]; then "$UCP" convert "$TAG" "$DIR/out" >"$DIR/rank0.log"; else run_ranks "$n"; fi
  t1=$(now)
  echo "convert_ranks$n $(echo "$t1 - $t0" | bc)"
done
BYTES=$(du -sb "$DIR/out" | awk '{print $1}')
rm -rf "$DIR/out"
sync
t0=$(now)
dd if=/dev/zero of="$DIR/dd.bin" bs=1M count=$((BYTES >> 20)) conv=fdatasync status=none
t1=$(now)
rm -f "$DIR/dd.bin"
echo "floor_dd $(echo "$t1 - $t0" | bc) ($BYTES bytes)"
