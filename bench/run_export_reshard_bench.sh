#!/usr/bin/env bash
# run_export_reshard_bench.sh BUILD_DIR [--params N] [--dir D] [--reps N]: times
#   ucp export SRC --out O --format safetensors      (against DeepSpeed's zero_to_fp32.py: 7.4 s,
#                                                     2.5 GiB peak RSS on the baseline checkpoint)
#   ucp reshard SRC --dp 2 --out O
#   and, from the ZeRO folder only: export --dtype bf16 (the cast path), reshard --zero-stage 1
# with SRC = the ZeRO tag folder and SRC = its UCP (made once by `ucp convert`, cached next to
# it), on the checkpoint of run_convert_bench.sh (same generator, same D). A subcommand whose
# `ucp CMD --help` fails (or prints no `Usage: ucp CMD`) is skipped with a message. For each
# run: REPS (default 3) repetitions after one untimed run that sizes the output, each beside its
# floor: cat of SRC's files to /dev/null + dd of the output's bytes with conv=fdatasync. Prints
# min/median, ratios to the floor, peak RSS. Raw rows: D/results/run_export_reshard_bench_*/raw.txt.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bench_lib.sh
source "$HERE/bench_lib.sh"
bench_init "$@"
ensure_checkpoint
UCP_DIR="$CK_ROOT/global_step1_universal_src"
OUT="$DIR/export_reshard_out"
Z2F_SECONDS=7.4
Z2F_RSS_MIB=2560
machine_facts | tee "$RES/machine.txt"

if [[ ! -f "$UCP_DIR/ucp_manifest.json" ]]; then
  need_disk $(( INPUT_BYTES * 3 )) "the cached UCP plus one output and dd's file"
  echo "converting once to $UCP_DIR (cached)" >&2
  "$UCP" convert --force "$TAG_DIR" "$UCP_DIR" >/dev/null
fi

# bench_one NAME SRC_FILES_GLOB_DIR CMD...: untimed first run, then REPS x (floor, CMD).
bench_one() {
  local name=$1 src=$2
  shift 2
  local files
  mapfile -t files < <(find "$src" -type f)
  INPUT_FILES=("${files[@]}")
  rm -rf "$OUT"
  timed "${name}_first" "$@"
  if ! tail -1 "$RES/raw.txt" | awk '{exit $7 != 0}'; then
    echo "  $name: failed, not timed further (see $RES/${name}_first.log)" >&2
    return 0
  fi
  if [[ ! -e "$OUT" ]]; then
    echo "  $name: succeeded but wrote nothing at $OUT: not timed further" | tee -a "$RES/summary.txt" >&2
    return 0
  fi
  local out_bytes
  out_bytes=$(du -sb "$OUT" | awk '{print $1}')
  echo "  $name: output $out_bytes bytes in $(find "$OUT" -type f | wc -l) files; source ${#files[@]} files" >&2
  for (( r = 1; r <= REPS; r++ )); do
    rm -rf "$OUT"
    floor_rep "$r" "$out_bytes"
    # rename this repetition's floor rows so each command's floor stays its own
    sed -i -e "\$s/^floor /${name}_floor /" "$RES/raw.txt"
    timed "$name" "$@"
  done
  rm -rf "$OUT"
  read -r f_min f_med < <(stat_of "${name}_floor" 2)
  read -r c_min c_med < <(stat_of "$name" 2)
  read -r _ rss < <(stat_of "$name" 3)
  read -r _ anon < <(stat_of "$name" 4)
  printf '%-28s min %7.3f s  median %7.3f s  floor median %7.3f s  ratio %s  peak RSS %s MiB (anon %s MiB)' \
    "$name" "$c_min" "$c_med" "$f_med" "$(ratio "$c_med" "$f_med")" "$(mib "$rss")" "$(mib "$anon")" >>"$RES/summary.txt"
  if [[ $name == export_zero || $name == export_ucp ]]; then
    printf '  vs zero_to_fp32 (%s s, %s MiB): %sx faster' "$Z2F_SECONDS" "$Z2F_RSS_MIB" \
      "$(ratio "$Z2F_SECONDS" "$c_med")" >>"$RES/summary.txt"
  fi
  echo >>"$RES/summary.txt"
}

: >"$RES/summary.txt"
need_disk $(( INPUT_BYTES * 2 )) "one output plus dd's file"
for cmd in export reshard; do
  # CLI11 answers an unknown subcommand's --help with the top-level help (rc 0): look for its usage.
  if ! "$UCP" "$cmd" --help 2>&1 | grep -q "Usage: .*ucp $cmd"; then
    echo "ucp $cmd: not available in $UCP ('ucp $cmd --help' fails or shows no '$cmd' usage): skipped" | tee -a "$RES/summary.txt"
    continue
  fi
  for kind in zero ucp; do
    src=$TAG_DIR
    [[ $kind == ucp ]] && src=$UCP_DIR
    echo "ucp $cmd from $kind ($src)" >&2
    if [[ $cmd == export ]]; then
      bench_one "export_$kind" "$src" "$UCP" export "$src" --out "$OUT" --format safetensors
    else
      bench_one "reshard_$kind" "$src" "$UCP" reshard "$src" --dp 2 --out "$OUT"
    fi
  done
done
# The cast path (fp32 masters read and cast to bf16 chunk by chunk) and a ZeRO stage change.
if "$UCP" export --help 2>&1 | grep -q -- "--dtype"; then
  bench_one "export_zero_bf16" "$TAG_DIR" "$UCP" export "$TAG_DIR" --out "$OUT" --format safetensors --dtype bf16
fi
if "$UCP" reshard --help 2>&1 | grep -q -- "--zero-stage"; then
  bench_one "reshard_zero_to_s1" "$TAG_DIR" "$UCP" reshard "$TAG_DIR" --dp 2 --zero-stage 1 --out "$OUT"
fi
{
  echo
  echo "== ucp export / reshard benchmark: $TAG_DIR (input $INPUT_BYTES bytes), reps $REPS"
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  cat "$RES/summary.txt"
  echo "raw rows (name wall_s maxrss_kib peak_anon_kib user_s sys_s rc): $RES/raw.txt"
} | tee "$RES/summary.full.txt"
