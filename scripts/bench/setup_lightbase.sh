#!/usr/bin/env bash
# Start a fresh Lightbase for the side-by-side benchmark.
#   - `$LB_BIN serve --http 127.0.0.1:$LB_PORT --dir $WORK/lb_data` (fresh dir;
#     log: $WORK/lb.log, pid: $WORK/lb.pid), waits for GET /health -> 200
#   - records the fresh idle RSS in $WORK/lb.idle_fresh_kb
#   - creates collection `posts` in env `default`
#     (POST /v1/database/instances/(default)/databases/(default)/collections
#      {"collectionName":"posts"}) and seeds the same $N documents as PocketBase
#     gets (seed.py --api lightbase, 100 per request); ids in $WORK/lb_ids.txt
# Knobs: WORK (required), LB_BIN (required), LB_PORT (18080), N (10000),
#        LB_KEY (a server API key: the server gets it as LIGHTBASE_ADMIN_KEY and every
#        request here sends `Authorization: Bearer $LB_KEY`), SEED_BATCH (100 documents per
#        request), SEED_THREADS (2 client threads).
# On failure it stops the server it started and prints the exact request/reply;
# on success the caller owns the pid.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
: "${WORK:?WORK must be set}"; : "${LB_BIN:?LB_BIN must be set}"
LB_PORT="${LB_PORT:-18080}"
N="${N:-10000}"
BASE="http://127.0.0.1:${LB_PORT}"
P="$BASE/v1/database/instances/(default)/databases/(default)"

"$LB_BIN" --version
if (exec 3<>"/dev/tcp/127.0.0.1/$LB_PORT") 2>/dev/null; then
  echo "port $LB_PORT is busy; set LB_PORT=..." >&2; exit 1
fi
mkdir -p "$WORK"
rm -rf "$WORK/lb_data" "$WORK/lb.pid"
AUTH_ARGS=()
if [ -n "${LB_KEY:-}" ]; then AUTH_ARGS=(-H "Authorization: Bearer $LB_KEY"); fi
env ${LB_KEY:+LIGHTBASE_ADMIN_KEY="$LB_KEY"} \
  "$LB_BIN" serve --http "127.0.0.1:${LB_PORT}" --dir "$WORK/lb_data" > "$WORK/lb.log" 2>&1 < /dev/null &
PID=$!
echo "$PID" > "$WORK/lb.pid"
ok=0
trap '[ "$ok" = 1 ] || { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -f "$WORK/lb.pid"; }' EXIT
echo "lightbase pid $PID on $BASE"
for _ in $(seq 1 150); do
  curl -fsS "$BASE/health" >/dev/null 2>&1 && break
  kill -0 "$PID" 2>/dev/null || { echo "lightbase exited; log:" >&2; cat "$WORK/lb.log" >&2; exit 1; }
  sleep 0.1
done
health=$(curl -sS -w ' HTTP %{http_code}' "$BASE/health")
echo "lightbase: GET /health -> $health"
case "$health" in *' HTTP 200') ;; *) echo "lightbase: unexpected /health reply" >&2; exit 1 ;; esac
echo "${health% HTTP 200}" | python3 -c 'import sys,json; assert json.load(sys.stdin)["status"] == "ok"' \
  || { echo "lightbase: /health did not answer {\"status\":\"ok\",…}" >&2; exit 1; }
sleep 1
awk '/^VmRSS/{print $2}' "/proc/$PID/status" > "$WORK/lb.idle_fresh_kb"

# request + exact reply on failure
req() { # METHOD URL [BODY]
  local out code
  out=$(curl -sS -X "$1" -H 'Content-Type: application/json' ${AUTH_ARGS[@]+"${AUTH_ARGS[@]}"} ${3:+--data-binary "$3"} \
        -w '\n%{http_code}' "$2") || { echo "lightbase: $1 $2 failed to connect" >&2; return 1; }
  code=${out##*$'\n'}; REPLY_BODY=${out%$'\n'*}
  if [ "${code:0:1}" != 2 ]; then
    printf 'lightbase: request failed\n  %s %s\n  body: %s\n  -> HTTP %s: %s\n' "$1" "$2" "${3:-}" "$code" "$REPLY_BODY" >&2
    return 1
  fi
}
req POST "$P/collections" '{"collectionName":"posts"}'
echo "lightbase: collection posts created -> $REPLY_BODY"

python3 "$HERE/seed.py" --api lightbase --base "$BASE" --collection posts --n "$N" --out "$WORK/lb_ids.txt" \
  --batch "${SEED_BATCH:-100}" --threads "${SEED_THREADS:-2}" ${LB_KEY:+--auth "Bearer $LB_KEY"}
# count (GATEWAY countDocument); a failure here is reported but not fatal
if req GET "$P/collections/posts/documents?count=true"; then
  echo "lightbase: count -> $REPLY_BODY"
  total=$(echo "$REPLY_BODY" | python3 -c 'import sys,json; print(json.load(sys.stdin).get("total"))' 2>/dev/null || echo "?")
  [ "$total" = "$N" ] || { echo "lightbase: expected $N documents, count says $total" >&2; exit 1; }
else
  echo "lightbase: (count not available; seeding checked by insertedIds only)" >&2
fi
ok=1
