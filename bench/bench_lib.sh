# bench_lib.sh: helpers shared by run_convert_bench.sh and run_export_reshard_bench.sh (sourced).
#
# bench_init "$@"     parses BUILD_DIR [--params N] [--dir D] [--reps N], sets BUILD UCP GEN PARAMS
#                     DIR REPS RES CK_ROOT TAG_DIR, checks the binaries.
# ensure_checkpoint   generates the ZeRO-2 dp=4 fp32 checkpoint once (make_zero2_checkpoint; its
#                     `latest`, written last, marks it complete), checking free disk space first.
# timed NAME CMD...   runs CMD under /usr/bin/time -v after `sync`; appends to $RES/raw.txt:
#                     NAME wall_s maxrss_kib peak_anon_kib user_s sys_s rc
#                     (wall from date +%s%N around the command; maxrss = time -v "Maximum resident
#                     set size"; peak_anon = the largest RssAnon sampled every 20 ms from
#                     /proc/PID/status of the command, i.e. without mapped file pages).
# stat_of NAME FIELD  "min median" of FIELD (2 = wall, 3 = maxrss, 4 = peak_anon) over NAME's rows.
# floor_rep R BYTES   one floor repetition: cat of every input file to /dev/null (floor_cat) and dd
#                     of BYTES with conv=fdatasync into $DIR (floor_dd); their sum as floor.

bench_usage() {
  echo "usage: $0 BUILD_DIR [--params N] [--dir D] [--reps N]   (e.g. build/release)" >&2
  exit 2
}

bench_init() {
  [[ $# -ge 1 ]] || bench_usage
  BUILD="$(cd "$1" && pwd)"
  shift
  PARAMS=""
  DIR="${UCP_BENCH_DIR:-/tmp/ucp-convert-bench}"
  REPS=3
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --params) [[ $# -ge 2 ]] || bench_usage; PARAMS="$2"; shift 2 ;;
      --dir) [[ $# -ge 2 ]] || bench_usage; DIR="$2"; shift 2 ;;
      --reps) [[ $# -ge 2 ]] || bench_usage; REPS="$2"; shift 2 ;;
      *) bench_usage ;;
    esac
  done
  [[ "$REPS" =~ ^[1-9][0-9]*$ ]] || bench_usage
  [[ -z "$PARAMS" || "$PARAMS" =~ ^[1-9][0-9]*$ ]] || bench_usage
  UCP="$BUILD/cli/ucp"
  GEN="$BUILD/bench/make_zero2_checkpoint"
  for b in "$UCP" "$GEN"; do
    if [[ ! -x "$b" ]]; then
      echo "$0: $b not found (build the targets ucp and make_zero2_checkpoint)" >&2
      exit 1
    fi
  done
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  CK_ROOT="$DIR/zero2_dp4_${PARAMS:-baseline}"
  TAG_DIR="$CK_ROOT/global_step1"
  RES="$DIR/results/$(basename "$0" .sh)_$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$RES"
  : >"$RES/raw.txt"
  export LC_ALL=C
}

avail_bytes() { df -B1 --output=avail "$1" | tail -1 | tr -d ' '; }

# need_disk BYTES WHAT: exits when $DIR's file system has less than BYTES free.
need_disk() {
  local avail
  avail=$(avail_bytes "$DIR")
  if (( avail < $1 )); then
    echo "$0: $DIR has $avail bytes free, $2 needs about $1 (use --dir or --params)" >&2
    exit 1
  fi
}

# ~16 bytes per parameter (fp32 weights + master + exp_avg + exp_avg_sq).
estimated_input_bytes() { echo $(( ${PARAMS:-200705280} * 16 + (16 << 20) )); }

ensure_checkpoint() {
  if [[ ! -f "$CK_ROOT/latest" ]]; then
    need_disk $(( $(estimated_input_bytes) * 3 )) "the checkpoint plus two outputs"
    rm -rf "$CK_ROOT"
    echo "generating $CK_ROOT (once; reused while its 'latest' exists)" >&2
    "$GEN" --out "$CK_ROOT" ${PARAMS:+--params "$PARAMS"} | tee "$CK_ROOT.facts"
  fi
  INPUT_FILES=("$TAG_DIR"/*.pt)
  INPUT_BYTES=$(du -sb "$TAG_DIR" | awk '{print $1}')
  echo "checkpoint: $(cat "$CK_ROOT.facts" 2>/dev/null) input_bytes=$INPUT_BYTES"
}

timed() {
  local name=$1
  shift
  sync
  local t0 t1 rc=0 tpid cpid="" anon=0 key val
  t0=$(date +%s%N)
  /usr/bin/time -v -o "$RES/$name.time" "$@" >"$RES/$name.log" 2>&1 &
  tpid=$!
  while kill -0 "$tpid" 2>/dev/null; do
    [[ -z "$cpid" ]] && cpid=$(pgrep -P "$tpid" | head -1 || true)
    if [[ -n "$cpid" && -r /proc/$cpid/status ]]; then
      while read -r key val _; do
        [[ $key == RssAnon: ]] && (( val > anon )) && anon=$val
      done <"/proc/$cpid/status" 2>/dev/null || true
    fi
    sleep 0.02
  done
  wait "$tpid" || rc=$?
  t1=$(date +%s%N)
  local maxrss user sys
  maxrss=$(awk -F': ' '/Maximum resident/ {print $2}' "$RES/$name.time")
  user=$(awk -F': ' '/User time/ {print $2}' "$RES/$name.time")
  sys=$(awk -F': ' '/System time/ {print $2}' "$RES/$name.time")
  local wall
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
  echo "$name $wall ${maxrss:-0} $anon ${user:-0} ${sys:-0} $rc" >>"$RES/raw.txt"
  printf '  %-22s %8.3f s  maxrss %7d KiB  anon %7d KiB  user %s sys %s rc %s\n' "$name" "$wall" "${maxrss:-0}" \
    "$anon" "${user:-0}" "${sys:-0}" "$rc" >&2
  if (( rc != 0 )); then
    echo "$0: $name failed (rc $rc); its output:" >&2
    tail -5 "$RES/$name.log" >&2
  fi
  return 0
}

stat_of() {
  awk -v n="$1" -v f="$2" '$1 == n && $7 == 0 {print $f}' "$RES/raw.txt" | sort -g |
    awk '{v[NR] = $1} END {if (NR == 0) {print "nan nan"; exit} m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print v[1], m}'
}

floor_rep() {
  local bytes=$2 mib
  mib=$(( (bytes + 1048575) / 1048576 ))
  timed floor_cat bash -c 'cat "$@" >/dev/null' _ "${INPUT_FILES[@]}"
  timed floor_dd dd if=/dev/zero of="$DIR/dd_floor.out" bs=1M count="$mib" conv=fdatasync status=none
  rm -f "$DIR/dd_floor.out"
  # floor = this repetition's cat + dd
  local c d
  c=$(awk '$1 == "floor_cat" {v = $2} END {print v}' "$RES/raw.txt")
  d=$(awk '$1 == "floor_dd" {v = $2} END {print v}' "$RES/raw.txt")
  echo "floor $(awk -v a="$c" -v b="$d" 'BEGIN {printf "%.3f", a + b}') 0 0 0 0 0" >>"$RES/raw.txt"
}

# ratio A B: A / B with 2 decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "nan"}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }

machine_facts() {
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host cores: $(nproc --all)  $(free -g | awk '/Mem:/ {print "RAM " $2 " GiB, available " $7 " GiB"}')"
  echo "disk: $(df -h --output=source,fstype,size,avail "$DIR" | tail -1)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
}
