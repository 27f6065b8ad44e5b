#!/usr/bin/env bash
# One wrk run against one server, measured. Adapted from the team's PocketBase
# baseline driver (run_bench.sh): same wrk flags, same report.lua RESULT line,
# same RSS/CPU sampling, but one (server, scenario, run) per call so that
# scripts/bench.sh can interleave servers (A B A B).
#
# usage: measure.sh SERVER SCENARIO RUN URL LUA_SCRIPT SERVER_PID
# env:   OUTDIR (required), DUR, CONNS, THREADS, plus whatever the lua script
#        reads (BENCH_DIR, LIST_QUERY, CREATE_WRAP, IDS_FILE).
# Appends one row to $OUTDIR/summary.tsv (header written if missing); raw wrk
# output, RSS samples and wrk's CPU time go to $OUTDIR/raw/.
set -euo pipefail
[ $# -eq 6 ] || { echo "usage: $0 SERVER SCENARIO RUN URL LUA_SCRIPT SERVER_PID" >&2; exit 2; }
srv=$1 sc=$2 run=$3 url=$4 script=$5 pid=$6
: "${OUTDIR:?OUTDIR must be set}"
DUR="${DUR:-15s}"; CONNS="${CONNS:-64}"; THREADS="${THREADS:-2}"
HERE="$(cd "$(dirname "$0")" && pwd)"
export BENCH_DIR="${BENCH_DIR:-$HERE}"
raw="$OUTDIR/raw"; mkdir -p "$raw"
base="$raw/$srv.$sc.$run"
summary="$OUTDIR/summary.tsv"
[ -s "$summary" ] || printf "server\tscenario\trun\trps\tp50_ms\tp90_ms\tp99_ms\tmax_ms\terrors\tnon2xx\trss_before_mb\trss_peak_mb\tvmhwm_mb\tserver_cpu_pct\twrk_cpu_pct\tother_cpu_pct\tload1\n" > "$summary"

kill -0 "$pid" 2>/dev/null || { echo "measure.sh: server $srv (pid $pid) is not running" >&2; exit 1; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$pid/stat"; }            # utime+stime of the server
sys_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }  # busy jiffies, whole machine
TCK=$(getconf CLK_TCK)

# reset the kernel's peak-RSS counter (VmHWM) so it covers this run only (if permitted)
echo 5 > "/proc/$pid/clear_refs" 2>/dev/null || true
before=$(rss_kb)
load1=$(cut -d' ' -f1 /proc/loadavg)
( while kill -0 "$pid" 2>/dev/null; do rss_kb; sleep 0.2; done ) > "$base.rss" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true' EXIT
c0=$(cpu_ticks); s0=$(sys_ticks); t0=$(date +%s.%N)
# bash `time` gives wrk's own user+sys CPU seconds
{ TIMEFORMAT='%U %S'; time wrk -t"$THREADS" -c"$CONNS" -d"$DUR" --latency -s "$script" "$url" > "$base.txt" 2>&1; } 2> "$base.wrktime" || true
c1=$(cpu_ticks); s1=$(sys_ticks); t1=$(date +%s.%N)
kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
hwm=$(awk '/^VmHWM/{print $2}' "/proc/$pid/status")
peak=$(sort -n "$base.rss" | tail -1)
wrk_s=$(awk '{print $1+$2}' "$base.wrktime")
read -r cpu_pct wrk_pct other_pct < <(awk -v c0="$c0" -v c1="$c1" -v s0="$s0" -v s1="$s1" \
  -v t0="$t0" -v t1="$t1" -v tck="$TCK" -v w="$wrk_s" 'BEGIN{
    el=t1-t0; srv=(c1-c0)/tck/el*100; wrk=w/el*100; all=(s1-s0)/tck/el*100;
    o=all-srv-wrk; if (o<0) o=0; printf "%.0f %.0f %.0f\n", srv, wrk, o }')
line=$(grep '^RESULT' "$base.txt" || echo "RESULT rps=NA")
get() { echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1==k{print $2}'; }
errs=$(( $(get err_connect || true)+0 + $(get err_read || true)+0 + $(get err_write || true)+0 + $(get err_timeout || true)+0 ))
mb() { awk -v k="${1:-0}" 'BEGIN{printf "%.1f", k/1024}'; }
printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$srv" "$sc" "$run" \
  "$(get rps)" "$(get p50_ms)" "$(get p90_ms)" "$(get p99_ms)" "$(get max_ms)" \
  "$errs" "$(get non2xx)" "$(mb "$before")" "$(mb "$peak")" "$(mb "$hwm")" \
  "$cpu_pct" "$wrk_pct" "$other_pct" "$load1" | tee -a "$summary"
