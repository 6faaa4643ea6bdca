#!/usr/bin/env bash
# run_convert_bench.sh BUILD_DIR [--params N] [--dir D] [--reps N]: the convert benchmark of the
# ucp-convert issue, against the I/O floor and DeepSpeed's ds_to_universal.py.
#
# Input: a DeepSpeed ZeRO-2 dp=4 fp32 checkpoint written once by BUILD_DIR/bench/make_zero2_checkpoint
# into D/zero2_dp4_baseline (the 200.7M-parameter model of the DeepSpeed baseline, 3.21 GB) or
# D/zero2_dp4_<N> with --params N; D defaults to $UCP_BENCH_DIR or /tmp/ucp-convert-bench. Needs
# about 3x the input's size free on D (input, output, dd's file).
#
# Then: cat of the inputs (warms the page cache), one untimed convert (its output's size sets the
# dd floor), and REPS (default 3) interleaved repetitions, each after `sync`:
#   floor_cat   cat every input file > /dev/null           (read floor, warm page cache)
#   floor_dd    dd if=/dev/zero bs=1M count=<output MiB> conv=fdatasync   (write floor)
#   convert     ucp convert TAG_DIR OUT                   (default threads: all cores; fsync on)
#   convert_t1  ucp convert --threads 1 TAG_DIR OUT
# OUT is deleted before each convert (untimed). Prints min/median of each, the ratios of the
# converts to the floor (cat + dd of the same repetition) and to DeepSpeed's 19.8 s (its best run
# on this machine kind, baseline.md), peak RSS (/usr/bin/time -v) and sampled peak anonymous RSS
# against the mapped input size. Raw rows, logs and time -v outputs: D/results/run_convert_bench_*/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bench_lib.sh
source "$HERE/bench_lib.sh"
bench_init "$@"
ensure_checkpoint
OUT="$CK_ROOT/global_step1_universal"
DS_SECONDS=19.8

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
machine_facts | tee "$RES/machine.txt"
cat "${INPUT_FILES[@]}" >/dev/null
rm -rf "$OUT"  # a stale staging folder of a killed run is removed by ucp itself
need_disk $(( INPUT_BYTES * 2 + (64 << 20) )) "one output plus dd's file"
timed convert_first "$UCP" convert "$TAG_DIR" "$OUT"
OUT_BYTES=$(du -sb "$OUT" | awk '{print $1}')
OUT_FILES=$(find "$OUT" -type f | wc -l)
echo "output: $OUT_FILES files, $OUT_BYTES bytes"

for (( r = 1; r <= REPS; r++ )); do
  echo "repetition $r/$REPS" >&2
  floor_rep "$r" "$OUT_BYTES"
  rm -rf "$OUT"
  timed convert "$UCP" convert "$TAG_DIR" "$OUT"
  rm -rf "$OUT"
  timed convert_t1 "$UCP" convert --threads 1 "$TAG_DIR" "$OUT"
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

read -r cat_min cat_med < <(stat_of floor_cat 2)
read -r dd_min dd_med < <(stat_of floor_dd 2)
read -r fl_min fl_med < <(stat_of floor 2)
read -r cv_min cv_med < <(stat_of convert 2)
read -r t1_min t1_med < <(stat_of convert_t1 2)
read -r _ cv_rss < <(stat_of convert 3)
read -r _ t1_rss < <(stat_of convert_t1 3)
read -r _ cv_anon < <(stat_of convert 4)
read -r _ t1_anon < <(stat_of convert_t1 4)
read -r cv_max_rss < <(awk '$1 == "convert" || $1 == "convert_t1" || $1 == "convert_first" {print $3}' "$RES/raw.txt" | sort -g | tail -1)
{
  echo
  echo "== ucp convert benchmark: $TAG_DIR"
  echo "input: ${#INPUT_FILES[@]} files, $INPUT_BYTES bytes (mapped input $(( INPUT_BYTES >> 20 )) MiB); output: $OUT_FILES files, $OUT_BYTES bytes; reps $REPS"
  echo "load average (1/5/15 min) before: $LOAD_BEFORE, after: $LOAD_AFTER"
  printf '%-34s %9s %9s\n' "what (wall seconds)" min median
  printf '%-34s %9.3f %9.3f\n' "floor_cat (read inputs)" "$cat_min" "$cat_med"
  printf '%-34s %9.3f %9.3f\n' "floor_dd (write output, fdatasync)" "$dd_min" "$dd_med"
  printf '%-34s %9.3f %9.3f\n' "floor = cat + dd" "$fl_min" "$fl_med"
  printf '%-34s %9.3f %9.3f\n' "convert (default threads)" "$cv_min" "$cv_med"
  printf '%-34s %9.3f %9.3f\n' "convert --threads 1" "$t1_min" "$t1_med"
  echo "ratio to floor (median/median; target <= 1.5): convert $(ratio "$cv_med" "$fl_med"), --threads 1 $(ratio "$t1_med" "$fl_med")"
  echo "ratio to floor (min/min): convert $(ratio "$cv_min" "$fl_min"), --threads 1 $(ratio "$t1_min" "$fl_min")"
  echo "speed-up over DeepSpeed ds_to_universal.py ${DS_SECONDS} s (target >= 8): convert $(ratio "$DS_SECONDS" "$cv_med"), --threads 1 $(ratio "$DS_SECONDS" "$t1_med") (median)"
  echo "peak RSS (time -v, median): convert $(mib "$cv_rss") MiB, --threads 1 $(mib "$t1_rss") MiB; largest of all runs $(mib "$cv_max_rss") MiB"
  echo "peak anonymous RSS (sampled, median): convert $(mib "$cv_anon") MiB, --threads 1 $(mib "$t1_anon") MiB"
  echo "target: peak RSS <= 256 MiB beyond the mapped input ($(( INPUT_BYTES >> 20 )) MiB): $(( cv_max_rss / 1024 <= 256 + (INPUT_BYTES >> 20) ? 1 : 0 )) (1 = met)"
  echo "raw rows (name wall_s maxrss_kib peak_anon_kib user_s sys_s rc): $RES/raw.txt"
} | tee "$RES/summary.txt"
rm -rf "$OUT"
