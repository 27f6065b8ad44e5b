#!/usr/bin/env bash
# Issue 4 benchmark: secondary indexes at 10 k and 1 M documents, Lightbase vs PocketBase side by
# side (results in docs/benchmarks.md, "Issue 4").
#
#   scripts/bench/index_bench.sh                      N=10000, DUR=15s, REPEAT=2
#   N=1000000 REPEAT=1 DUR=10s scripts/bench/index_bench.sh
#   scripts/bench/index_bench.sh --quick              DUR=5s REPEAT=1 (unless set)
#
# What it does (same harness as scripts/bench.sh: setup_*.sh, seed.py, measure.sh, the wrk Lua
# scripts; servers interleaved A B A B):
#   1. takes $LB_BIN or builds `cargo build --release -p lightbase` once (in $CARGO_TARGET_DIR)
#      and copies the binary into the work dir, so a rebuild elsewhere cannot swap it mid-run
#   2. starts Lightbase (with a server API key, LIGHTBASE_ADMIN_KEY) and seeds N documents
#      {title, n, owner}, n = 0..N-1, $SEED_BATCH per POST …/documents (seed.py; rate reported);
#      starts PocketBase (no index yet) and seeds the same N records through its batch API
#      (POST /api/batch, $PB_BATCH per request, enabled in its settings by setup_pocketbase.sh)
#   3. sizes: raw JSON of the seeded documents (NDJSON, without ids) vs `du -sb` of each data dir
#   4. index build, after seeding:
#        Lightbase   POST /admin/v1/envs/default/collections/posts/indexes {"fields":"n:desc"}
#                    (202, built in the background), then GET …/indexes every $POLL s until
#                    state = ready; time, RSS before/after, peak RSS (VmHWM, reset first, and
#                    0.2 s samples), entries/bytes
#        PocketBase  PATCH /api/collections/posts {"indexes":["CREATE INDEX idx_posts_n ON posts (n)"]}
#                    (synchronous); time and peak RSS the same way
#   5. plans: Lightbase's POST …/explain of both queries (must be an index plan), SQLite's
#      EXPLAIN QUERY PLAN of the equivalent SELECT on PocketBase's data.db (read-only)
#   6. one request of each scenario on both servers, reply checked, then wrk, REPEAT rounds:
#        list_indexed   wrk -t$THREADS -c$CONNS: n > 5000, sort n desc, limit 20
#                       Lightbase  GET …/documents?query={"n":{"$gt":5000}}
#                                  &order=[{"field":"n","direction":"desc"}]&limit=20
#                       PocketBase GET …/records?filter=(n>5000)&sort=-n&perPage=20&skipTotal=1
#        point_indexed  wrk -t1 -c1 (one connection): n = 1234
#                       Lightbase  GET …/documents?query={"n":1234}&limit=1
#                       PocketBase GET …/records?filter=(n=1234)&perPage=1&skipTotal=1
#   7. $group over all N documents on Lightbase, $AGG_REPEAT times:
#        POST …/collections/posts/documents/aggregations
#             {"pipeline":[{"$group":{"_id":"$owner","total":{"$sum":"$n"}}}]}   (protocol §3.3)
#      time, peak RSS, the result checked (100 owners, totals summing to N(N-1)/2); a server
#      without aggregation gets "aggregation not available" and its reply in the report
#   8. sizes again after the load and after a clean stop; report.md (index_report.py)
#   (… = /v1/database/instances/(default)/databases/(default), the CloudBase GATEWAY prefix)
#
# Knobs (environment variables):
#   N=10000 DUR=15s CONNS=64 THREADS=2 REPEAT=2 PAUSE=3
#   SEED_BATCH=500 SEED_THREADS=2 PB_BATCH=500   seeding
#   POLL=0.5 (5 when N >= 100000)        seconds between GET …/indexes polls; each one counts
#                                         the index's entries (≈ 2 s of a core at 1 M), so it
#                                         slows the build; the reported build time is the
#                                         server log's `index ready` (also the polled time)
#   AGG_REPEAT=2  GROUP_KEY='$owner'      $group runs and its key
#   AGG_LB_BIN=… AGG_LB_LABEL=…           also run the $group on this second Lightbase binary
#                                         (e.g. a branch with aggregation), on its own fresh data
#                                         dir seeded the same way, after the main servers stopped
#   PERF=1                                after the rounds: `perf record --call-graph dwarf` of
#                                         Lightbase for $PERF_SECS (10) s under the list load
#                                         -> perf.data, perf.txt (self), perf_children.txt
#   LB_PORT=18480 PB_PORT=18490  LB_BIN=…  PB_VERSION PB_VENV (as scripts/bench.sh)
#   OUTDIR=bench-results/index-<N>-<timestamp>  WORK=<mktemp -d>  KEEP_WORK=1
# Flags: --quick, --no-build, --keep, -h/--help.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
B="$REPO/scripts/bench"

QUICK=0; NO_BUILD=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --no-build) NO_BUILD=1 ;;
    --keep) KEEP_WORK=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done
if [ "$QUICK" = 1 ]; then DUR="${DUR:-5s}"; REPEAT="${REPEAT:-1}"; fi
N="${N:-10000}"; DUR="${DUR:-15s}"; CONNS="${CONNS:-64}"; THREADS="${THREADS:-2}"; REPEAT="${REPEAT:-2}"
# each GET …/indexes counts the index's entries (≈ 2 s at 1 M), so poll big builds rarely
if [ "${N:-10000}" -ge 100000 ]; then POLL="${POLL:-5}"; else POLL="${POLL:-0.5}"; fi
PAUSE="${PAUSE:-3}"; AGG_REPEAT="${AGG_REPEAT:-2}"; GROUP_KEY="${GROUP_KEY:-\$owner}"
export SEED_BATCH="${SEED_BATCH:-500}" SEED_THREADS="${SEED_THREADS:-2}" PB_BATCH="${PB_BATCH:-500}"
LB_PORT="${LB_PORT:-18480}"; PB_PORT="${PB_PORT:-18490}"
PB_VERSION="${PB_VERSION:-0.40.6}"
PB_VENV="${PB_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/lightbase-bench/pocketbase-$PB_VERSION}"
KEEP_WORK="${KEEP_WORK:-0}"; PERF="${PERF:-0}"; PERF_SECS="${PERF_SECS:-10}"
OUTDIR="${OUTDIR:-$REPO/bench-results/index-$N-$(date +%Y%m%d-%H%M%S)}"
export N LB_PORT PB_PORT PB_VERSION PB_VENV OUTDIR BENCH_DIR="$B" PB_INDEX_N=0
[ "$N" -gt 5020 ] || { echo "N must be > 5020 (the list reads n > 5000, 20 per page)" >&2; exit 2; }

log() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; } # T0 T1 -> seconds
kb() { awk "/^$2/{print \$2}" "/proc/$1/status"; }
mb() { awk -v k="${1:-0}" 'BEGIN{printf "%.1f", k/1024}'; }

# ---------------------------------------------------------------- tools
need=()
for t in wrk curl python3; do command -v "$t" >/dev/null || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  log "installing ${need[*]}"; $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# ---------------------------------------------------------------- work dir + cleanup
WORK="${WORK:-$(mktemp -d /tmp/lightbase-index-bench.XXXXXX)}"
export WORK
mkdir -p "$WORK" "$OUTDIR"
stop_pid() { # PID NAME: SIGTERM, wait up to 30 s, then SIGKILL
  local pid=$1 name=$2
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || { echo "stopped $name (pid $pid)"; return 0; }; sleep 0.1; done
  echo "$name (pid $pid) did not stop after SIGTERM; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
SAMPLER=""
cleanup() {
  local rc=$?
  set +e
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
  for s in lb pb agg; do [ -s "$WORK/$s.pid" ] && stop_pid "$(cat "$WORK/$s.pid")" "$s"; done
  for s in lb pb; do [ -f "$WORK/$s.log" ] && cp "$WORK/$s.log" "$OUTDIR/" 2>/dev/null; done
  if [ "$KEEP_WORK" = 1 ]; then echo "kept data dirs in $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- context
ctx() { printf '%s=%s\n' "$1" "$2" >> "$OUTDIR/context.env"; }
: > "$OUTDIR/context.env"
ctx DATE "$(date -u '+%Y-%m-%d %H:%M UTC')"
ctx NPROC "$(nproc)"
ctx CPU_MODEL "$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
ctx MEM "$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
ctx KERNEL "$(uname -r)"
ctx LOAD_START "$(cut -d' ' -f1-3 /proc/loadavg)"
ctx UPTIME_START "$(uptime)"
ctx DUR "$DUR"; ctx CONNS "$CONNS"; ctx THREADS "$THREADS"; ctx REPEAT "$REPEAT"; ctx N "$N"
ctx SEED_BATCH "$SEED_BATCH"; ctx PB_BATCH "$PB_BATCH"; ctx POLL "$POLL"; ctx GROUP_KEY "$GROUP_KEY"
ctx WRK "$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
ctx COMMAND "N=$N REPEAT=$REPEAT DUR=$DUR scripts/bench/index_bench.sh"
{ echo "top CPU consumers at start:"; ps -eo pcpu,pid,comm --sort=-pcpu | head -8; } > "$OUTDIR/context.txt"

# ---------------------------------------------------------------- binary
[ -n "${LB_BIN:-}" ] && ctx LB_BIN_GIVEN "$LB_BIN (LB_GIT is the repo's HEAD, not necessarily this binary's)"
if [ -z "${LB_BIN:-}" ]; then
  LB_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/lightbase"
  if [ "$NO_BUILD" = 0 ]; then
    log "cargo build --release -p lightbase"
    (cd "$REPO" && cargo build --release -p lightbase)
  fi
fi
[ -x "$LB_BIN" ] || { echo "no lightbase binary at $LB_BIN" >&2; exit 1; }
cp "$LB_BIN" "$WORK/lightbase"
export LB_BIN="$WORK/lightbase"
ctx LB_VERSION "$("$LB_BIN" --version 2>/dev/null | head -1)"
ctx LB_GIT "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)$( [ -n "$(git -C "$REPO" status --porcelain 2>/dev/null | head -1)" ] && echo '+dirty')"
ctx PB_VERSION "$PB_VERSION"

LB_KEY="bench-index-key-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export LB_KEY
LB="http://127.0.0.1:$LB_PORT"; P="$LB/v1/database/instances/(default)/databases/(default)"
LB_ADMIN="$LB/admin/v1/envs/default/collections/posts"
PB="http://127.0.0.1:$PB_PORT"
lbcurl() { curl -sS -H "Authorization: Bearer $LB_KEY" -H 'Content-Type: application/json' "$@"; }

# ---------------------------------------------------------------- seed
printf 'server\tdocs\tsecs\tdocs_per_s\tper_request\tthreads\n' > "$OUTDIR/seed.tsv"
seedrow() { # SERVER FILE: parse seed.py's "seeded N … in Xs (R docs/s, T threads, B per request)"
  python3 - "$1" "$2" >> "$OUTDIR/seed.tsv" <<'PY'
import re, sys
s, f = sys.argv[1], sys.argv[2]
m = re.search(r"seeded (\d+) \w+ documents in ([\d.]+)s \((\d+) docs/s, (\d+) threads(?:, (\d+) per request)?", open(f).read())
print("\t".join([s, m[1], m[2], m[3], m[5] or "1", m[4]]))
PY
}
log "Lightbase: start + seed $N documents ($SEED_BATCH per request)"
"$B/setup_lightbase.sh" 2>&1 | tee "$OUTDIR/seed_lightbase.txt"
LB_PID=$(cat "$WORK/lb.pid")
seedrow lightbase "$OUTDIR/seed_lightbase.txt"
log "PocketBase: start + seed $N records ($PB_BATCH per batch request)"
"$B/setup_pocketbase.sh" 2>&1 | tee "$OUTDIR/seed_pocketbase.txt"
PB_PID=$(cat "$WORK/pb.pid")
PB_TOKEN=$(cat "$WORK/pb.token")
seedrow pocketbase "$OUTDIR/seed_pocketbase.txt"
column -t "$OUTDIR/seed.tsv"

# ---------------------------------------------------------------- sizes
RAW=$(cd "$B" && PYTHONDONTWRITEBYTECODE=1 python3 -c '
import json, sys, seed
n = int(sys.argv[1])
print(sum(len(json.dumps(seed.doc(i), separators=(",", ":"), ensure_ascii=False).encode()) + 1 for i in range(n)))' "$N")
ctx RAW_JSON_BYTES "$RAW"
printf 'when\tserver\tpath\tbytes\n' > "$OUTDIR/sizes.tsv"
sizes() { # WHEN
  printf '%s\tlightbase\tlb_data\t%s\n' "$1" "$(du -sb "$WORK/lb_data" | cut -f1)" >> "$OUTDIR/sizes.tsv"
  printf '%s\tpocketbase\tpb_data\t%s\n' "$1" "$(du -sb "$WORK/pb_data" | cut -f1)" >> "$OUTDIR/sizes.tsv"
  printf '%s\tpocketbase\tdata.db*\t%s\n' "$1" "$(cat "$WORK"/pb_data/data.db* | wc -c)" >> "$OUTDIR/sizes.tsv"
  { echo "# $1"; (cd "$WORK" && du -ab lb_data pb_data | sort -n | tail -12); } >> "$OUTDIR/sizes_detail.txt"
}
log "idle 5 s, then data dir sizes (raw JSON of the documents: $RAW bytes)"
sleep 5
sizes seeded
printf 'server\tidle_seeded_mb\n' > "$OUTDIR/idle.tsv"
printf 'lightbase\t%s\npocketbase\t%s\n' "$(mb "$(kb "$LB_PID" VmRSS)")" "$(mb "$(kb "$PB_PID" VmRSS)")" >> "$OUTDIR/idle.tsv"
column -t "$OUTDIR/sizes.tsv"

# ---------------------------------------------------------------- index build
printf 'server\tsecs\tsecs_log\trss_before_mb\tpeak_mb\tvmhwm_mb\trss_after_mb\tentries\tbytes\tpolls\tlist_secs\n' > "$OUTDIR/build.tsv"
sample_rss() { # PID FILE: RSS every 0.2 s in the background (SAMPLER)
  ( while kill -0 "$1" 2>/dev/null; do kb "$1" VmRSS; sleep 0.2; done ) > "$2" &
  SAMPLER=$!
}
stop_sampler() { kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=""; }

log "Lightbase: index on n (desc), built in the background"
echo 5 > "/proc/$LB_PID/clear_refs" 2>/dev/null || echo "(cannot reset VmHWM: peak includes seeding)"
before=$(kb "$LB_PID" VmRSS)
sample_rss "$LB_PID" "$OUTDIR/build_lightbase.rss"
t0=$(now); t0_utc=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
reply=$(lbcurl -X POST -w '\n%{http_code}' "$LB_ADMIN/indexes" --data-binary '{"fields":"n:desc"}')
code=${reply##*$'\n'}
echo "POST …/indexes {\"fields\":\"n:desc\"} -> HTTP $code ${reply%$'\n'*}" | tee "$OUTDIR/build_lightbase.txt"
[ "$code" = 202 ] || { echo "index create failed" >&2; exit 1; }
polls=0
while :; do
  sleep "$POLL"
  p0=$(now); list=$(lbcurl "$LB_ADMIN/indexes"); polls=$((polls + 1)); list_secs=$(elapsed "$p0" "$(now)")
  state=$(echo "$list" | python3 -c 'import sys,json; i=json.load(sys.stdin)["indexes"][0]; print(i["state"], i.get("done"), i.get("total"), i.get("entries"), i.get("bytes"))')
  set -- $state
  [ $((polls % 10)) = 1 ] && echo "  $(elapsed "$t0" "$(now)") s: $state"
  case "$1" in
    ready) break ;;
    failed) echo "index build failed: $list" >&2; exit 1 ;;
  esac
done
t1=$(now)
stop_sampler
hwm=$(kb "$LB_PID" VmHWM); sleep 1; after=$(kb "$LB_PID" VmRSS)
peak=$(sort -n "$OUTDIR/build_lightbase.rss" | tail -1)
# the server logs "index ready" when the last chunk is written: a time without the poll interval
ready_ts=$(grep -a 'index ready' "$WORK/lb.log" | tail -1 | grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z?' | head -1 || true)
secs_log=$(python3 - "$t0_utc" "${ready_ts:-}" <<'PY'
import sys
from datetime import datetime
def p(s):
    s = s.rstrip("Z")
    if "." in s:
        a, b = s.split(".")
        s = a + "." + b[:6]
    return datetime.fromisoformat(s)
try:
    print(f"{(p(sys.argv[2]) - p(sys.argv[1])).total_seconds():.2f}")
except Exception:
    print("NA")
PY
)
echo "$list" >> "$OUTDIR/build_lightbase.txt"
printf 'lightbase\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(elapsed "$t0" "$t1")" "$secs_log" "$(mb "$before")" \
  "$(mb "$peak")" "$(mb "$hwm")" "$(mb "$after")" "$4" "$5" "$polls" "$list_secs" >> "$OUTDIR/build.tsv"

log "PocketBase: CREATE INDEX idx_posts_n ON posts (n) through PATCH /api/collections/posts"
echo 5 > "/proc/$PB_PID/clear_refs" 2>/dev/null || true
before=$(kb "$PB_PID" VmRSS)
sample_rss "$PB_PID" "$OUTDIR/build_pocketbase.rss"
t0=$(now)
reply=$(curl -sS -X PATCH "$PB/api/collections/posts" -H "Authorization: $PB_TOKEN" -H 'Content-Type: application/json' \
  -d '{"indexes":["CREATE INDEX idx_posts_n ON posts (n)"]}' -w '\n%{http_code}')
t1=$(now)
stop_sampler
code=${reply##*$'\n'}
echo "PATCH /api/collections/posts {indexes:[CREATE INDEX idx_posts_n ON posts (n)]} -> HTTP $code" | tee "$OUTDIR/build_pocketbase.txt"
[ "$code" = 200 ] || { echo "${reply%$'\n'*}" >&2; exit 1; }
hwm=$(kb "$PB_PID" VmHWM); sleep 1; after=$(kb "$PB_PID" VmRSS)
peak=$(sort -n "$OUTDIR/build_pocketbase.rss" | tail -1)
printf 'pocketbase\t%.2f\tNA\t%s\t%s\t%s\t%s\tNA\tNA\t0\tNA\n' "$(elapsed "$t0" "$t1")" "$(mb "$before")" \
  "$(mb "$peak")" "$(mb "$hwm")" "$(mb "$after")" >> "$OUTDIR/build.tsv"
column -t "$OUTDIR/build.tsv"

# ---------------------------------------------------------------- plans
urlenc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
LB_LIST_Q="query=$(urlenc '{"n":{"$gt":5000}}')&order=$(urlenc '[{"field":"n","direction":"desc"}]')&limit=20"
PB_LIST_Q="filter=%28n%3E5000%29&sort=-n&perPage=20&skipTotal=1"
LB_POINT_Q="query=$(urlenc '{"n":1234}')&limit=1"
PB_POINT_Q="filter=%28n%3D1234%29&perPage=1&skipTotal=1"

log "query plans"
{
  for body in '{"query":{"n":{"$gt":5000}},"order":[{"field":"n","direction":"desc"}],"limit":20}' \
              '{"query":{"n":1234},"limit":1}'; do
    echo "Lightbase POST /admin/v1/envs/default/collections/posts/explain $body"
    echo "  -> $(lbcurl -X POST "$LB_ADMIN/explain" --data-binary "$body")"
  done
  if command -v sqlite3 >/dev/null; then
    for sql in 'SELECT * FROM posts WHERE n > 5000 ORDER BY n DESC LIMIT 20' 'SELECT * FROM posts WHERE n = 1234 LIMIT 1'; do
      echo "PocketBase data.db (sqlite3, read-only) EXPLAIN QUERY PLAN $sql"
      echo "  -> $(sqlite3 "file:$WORK/pb_data/data.db?mode=ro" "EXPLAIN QUERY PLAN $sql" 2>&1 | tr '\n' ' ')"
    done
  fi
} | tee "$OUTDIR/explain.txt"
grep -q '"type":"index"' "$OUTDIR/explain.txt" || echo "WARNING: Lightbase did not choose an index plan (above)" >&2

# ---------------------------------------------------------------- probes
# sets URL LISTQ AUTHH for (server, scenario)
setup_case() {
  if [ "$1" = lightbase ]; then
    URL="$P/collections/posts/documents"; AUTHH="Bearer $LB_KEY"; PID=$LB_PID
    if [ "$2" = list_indexed ]; then LISTQ="$LB_LIST_Q"; else LISTQ="$LB_POINT_Q"; fi
  else
    URL="$PB/api/collections/posts/records"; AUTHH=""; PID=$PB_PID
    if [ "$2" = list_indexed ]; then LISTQ="$PB_LIST_Q"; else LISTQ="$PB_POINT_Q"; fi
  fi
}
probe() {
  local out code reply secs
  setup_case "$1" "$2"
  out=$(curl -sS ${AUTHH:+-H "Authorization: $AUTHH"} -w '\n%{time_total} %{http_code}' "$URL?$LISTQ" 2>&1) || true
  code=${out##*$'\n'}; reply=${out%$'\n'*}; secs=${code% *}; code=${code#* }
  printf -- '--- %s %s\nGET %s?%s\n-> HTTP %s in %s s: %.1200s\n' "$1" "$2" "$URL" "$LISTQ" "$code" "$secs" "$reply"
  [ "$code" = 200 ] || return 1
  REPLY_JSON="$reply" python3 - "$1" "$2" "$N" <<'PY'
import json, os, sys
s, sc, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = json.loads(os.environ["REPLY_JSON"])
items = r.get("list", r.get("data")) if s == "lightbase" else r.get("items")
ns = [d.get("n") for d in items] if isinstance(items, list) else None
want = list(range(n - 1, 5000, -1))[:20] if sc == "list_indexed" else [1234]
if ns != want:
    print(f"CHECK FAILED ({s} {sc}): expected n values {want[:3]}…({len(want)}), got {ns}")
    sys.exit(1)
PY
}
log "checking one request per scenario and server"
failed=0
for sc in list_indexed point_indexed; do for s in lightbase pocketbase; do
  probe "$s" "$sc" | tee -a "$OUTDIR/probe.txt" || failed=1
done; done
[ "$failed" = 0 ] || { echo "a server answered an error or a wrong result (above); not benchmarking" >&2; exit 1; }

# ---------------------------------------------------------------- wrk rounds
log "benchmark: list_indexed (wrk -t$THREADS -c$CONNS) and point_indexed (wrk -t1 -c1), $REPEAT round(s), -d$DUR"
for sc in list_indexed point_indexed; do
  if [ "$sc" = point_indexed ]; then c=1; t=1; else c=$CONNS; t=$THREADS; fi
  for run in $(seq 1 "$REPEAT"); do
    for s in lightbase pocketbase; do
      setup_case "$s" "$sc"
      sleep "$PAUSE"
      printf '%s %s round %s: ' "$s" "$sc" "$run"
      CONNS=$c THREADS=$t DUR=$DUR LIST_QUERY="$LISTQ" BENCH_AUTH="$AUTHH" \
        "$B/measure.sh" "$s" "$sc" "$run" "$URL" "$B/list_filter.lua" "$PID" | tail -1
    done
  done
done

if [ "$PERF" = 1 ] && command -v perf >/dev/null; then
  log "perf record --call-graph dwarf of Lightbase for ${PERF_SECS}s under the list load"
  setup_case lightbase list_indexed
  LIST_QUERY="$LISTQ" BENCH_AUTH="$AUTHH" wrk -t"$THREADS" -c"$CONNS" -d"$((PERF_SECS + 4))s" -s "$B/list_filter.lua" "$URL" \
    > "$OUTDIR/perf_wrk.txt" 2>&1 &
  wrkpid=$!
  sleep 2
  # dwarf unwinding: the release build has debug info but no frame pointers
  perf record --call-graph dwarf,16384 -F 499 -p "$LB_PID" -o "$OUTDIR/perf.data" -- sleep "$PERF_SECS" \
    2> "$OUTDIR/perf_record.txt" || true
  wait "$wrkpid" || true
  perf report -i "$OUTDIR/perf.data" --stdio --no-children --sort symbol -g none --percent-limit 0.5 2>/dev/null \
    | sed 's/ \{3,\}/  /g' > "$OUTDIR/perf.txt" || true
  perf report -i "$OUTDIR/perf.data" --stdio --children --sort symbol -g none --percent-limit 2 2>/dev/null \
    | sed 's/ \{3,\}/  /g' > "$OUTDIR/perf_children.txt" || true
  echo "perf: $OUTDIR/perf.txt, $OUTDIR/perf_children.txt"
fi

# ---------------------------------------------------------------- $group
printf 'binary\trun\tstatus\tsecs\trss_before_mb\tpeak_mb\tvmhwm_mb\trss_after_mb\tgroups\tcheck\n' > "$OUTDIR/agg.tsv"
AGG_BODY="{\"pipeline\":[{\"\$group\":{\"_id\":\"$GROUP_KEY\",\"total\":{\"\$sum\":\"\$n\"}}}]}"
run_group() { # PID BASE_PREFIX LABEL: $AGG_REPEAT timed $group requests, rows in agg.tsv
  local pid=$1 prefix=$2 label=$3 run before hwm after peak out code reply secs res status
  log "\$group over all $N documents on Lightbase [$label] (by $GROUP_KEY, sum of n), $AGG_REPEAT time(s)"
  echo "[$label] POST $prefix/collections/posts/documents/aggregations $AGG_BODY" >> "$OUTDIR/agg.txt"
  for run in $(seq 1 "$AGG_REPEAT"); do
    sleep "$PAUSE"
    echo 5 > "/proc/$pid/clear_refs" 2>/dev/null || true
    before=$(kb "$pid" VmRSS)
    sample_rss "$pid" "$OUTDIR/agg_${label}_$run.rss"
    out=$(lbcurl -X POST -w '\n%{time_total} %{http_code}' "$prefix/collections/posts/documents/aggregations" \
          --data-binary "$AGG_BODY" --max-time 900) || true
    stop_sampler
    hwm=$(kb "$pid" VmHWM); after=$(kb "$pid" VmRSS)
    peak=$(sort -n "$OUTDIR/agg_${label}_$run.rss" | tail -1)
    code=${out##*$'\n'}; reply=${out%$'\n'*}; secs=${code% *}; code=${code#* }
    printf -- '-> round %s: HTTP %s in %s s: %.600s\n' "$run" "$code" "$secs" "$reply" >> "$OUTDIR/agg.txt"
    res=$(REPLY_JSON="$reply" python3 - "$code" "$N" "$GROUP_KEY" <<'PY'
import json, os, sys
code, n, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    r = json.loads(os.environ["REPLY_JSON"])
except Exception:
    r = {}
lst = r.get("list") if isinstance(r, dict) else None
if not code.startswith("2") or not isinstance(lst, list):
    print("unavailable\tNA\t" + "aggregation not available: HTTP %s %s" % (code, (r.get("code", "") if isinstance(r, dict) else "")))
    sys.exit(0)
total = sum(d.get("total", 0) for d in lst)
want_groups = 100 if key == "$owner" else None
ok = total == n * (n - 1) // 2 and (want_groups is None or len(lst) == min(want_groups, n))
print(("ok" if ok else "wrong") + f"\t{len(lst)}\t"
      + ("totals sum to N(N-1)/2" if ok else f"WRONG: {len(lst)} groups, totals sum {total}"))
PY
)
    status=${res%%$'\t'*}
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$run" "$status" "$secs" "$(mb "$before")" "$(mb "$peak")" \
      "$(mb "$hwm")" "$(mb "$after")" "${res#*$'\t'}" >> "$OUTDIR/agg.tsv"
    if [ "$status" = unavailable ]; then echo "aggregation not available (HTTP $code: ${reply:0:300})"; break; fi
  done
  column -t -s $'\t' "$OUTDIR/agg.tsv"
}
run_group "$LB_PID" "$P" main

# ---------------------------------------------------------------- sizes after
log "sizes after the load (idle 5 s) and after a clean stop"
sleep 5
sizes loaded
stop_pid "$LB_PID" lightbase; stop_pid "$PB_PID" pocketbase
sizes stopped
column -t "$OUTDIR/sizes.tsv"

if [ -n "${AGG_LB_BIN:-}" ]; then
  # a second binary (e.g. a branch that has aggregation) on its own fresh data dir, seeded the same way
  log "AGG_LB_BIN: $AGG_LB_BIN on a fresh data dir, $N documents"
  AGGW="$WORK/agg"
  mkdir -p "$AGGW"; cp "$AGG_LB_BIN" "$AGGW/lightbase"
  ctx AGG_LB_VERSION "$("$AGGW/lightbase" --version 2>/dev/null | head -1)"
  ctx AGG_LB_LABEL "${AGG_LB_LABEL:-AGG_LB_BIN}"
  WORK="$AGGW" LB_BIN="$AGGW/lightbase" "$B/setup_lightbase.sh" > "$OUTDIR/seed_agg.txt" 2>&1 \
    || { cat "$OUTDIR/seed_agg.txt" >&2; exit 1; }
  tail -2 "$OUTDIR/seed_agg.txt"
  AGG_PID=$(cat "$AGGW/lb.pid"); echo "$AGG_PID" > "$WORK/agg.pid"
  sleep 5
  run_group "$AGG_PID" "$P" "${AGG_LB_LABEL:-AGG_LB_BIN}"
  stop_pid "$AGG_PID" "lightbase (AGG_LB_BIN)"
fi
ctx LOAD_END "$(cut -d' ' -f1-3 /proc/loadavg)"
ctx UPTIME_END "$(uptime)"
{ echo "top CPU consumers at end:"; ps -eo pcpu,pid,comm --sort=-pcpu | head -8; } >> "$OUTDIR/context.txt"

log "report ($OUTDIR/report.md)"
python3 "$B/index_report.py" "$OUTDIR"
