#!/usr/bin/env bash
# Issue 3 benchmark: the cost of auth + security rules on the hottest read, and password sign-in.
# Starts a release Lightbase on 127.0.0.1:$PORT over a temp dir, seeds one document owned by a
# signed-up user in a PRIVATE collection, then runs wrk (A B A B …, $REPEAT rounds):
#   admin   GET by id with the server API key (no rules: the stored bytes are returned as they are)
#   user    GET by id with the owner's access token (token verified, user looked up, PRIVATE rule
#           narrowing the query to the caller's documents)
# and a password sign-in load (POST /auth/v1/signin, argon2id) with the sign-in limit raised.
# Usage: scripts/bench/auth_overhead.sh   (knobs: PORT DUR CONNS REPEAT LB_BIN)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PORT="${PORT:-18380}"; DUR="${DUR:-10s}"; CONNS="${CONNS:-64}"; REPEAT="${REPEAT:-2}"
LB_BIN="${LB_BIN:-$REPO/target/release/lightbase}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ -x "$LB_BIN" ] || (cd "$REPO" && cargo build --release -p lightbase)
WORK="$(mktemp -d)"; KEY="bench-admin-key-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
LIGHTBASE_ADMIN_KEY="$KEY" LIGHTBASE_LOG=warn "$LB_BIN" serve --http "127.0.0.1:$PORT" --dir "$WORK/data" \
  --rate-limit-signin 1000000/s:1000000 > "$WORK/server.log" 2>&1 &
PID=$!; trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
B="http://127.0.0.1:$PORT"; P="$B/v1/database/instances/(default)/databases/(default)"
for _ in $(seq 100); do curl -fs "$B/health" >/dev/null && break; sleep 0.1; done
curl -fs -H "Authorization: Bearer $KEY" -X POST "$P/collections" -d '{"collectionName":"notes"}' >/dev/null
USER_AT=$(curl -fs -X POST "$B/auth/v1/signup?client_id=default" -d '{"username":"bench","password":"bench password"}' \
  | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
curl -fs -H "Authorization: Bearer $USER_AT" -X POST "$P/collections/notes/documents" \
  -d '{"data":[{"_id":"n1","title":"hello","n":1}]}' >/dev/null
URL="$P/collections/notes/documents/n1"
# both callers must see the document
curl -fs -H "Authorization: Bearer $KEY" "$URL" | grep -q '"n1"'
curl -fs -H "Authorization: Bearer $USER_AT" "$URL" | grep -q '"n1"'
cat > "$WORK/signin.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"username":"bench","password":"bench password"}'
wrk.headers["Content-Type"] = "application/json"
LUA
run() { wrk -t2 -c"$2" -d"$DUR" --latency "${@:3}" | awk -v n="$1" '/Requests\/sec/{r=$2} /^ +50%/{p50=$2} /^ +99%/{p99=$2} /Non-2xx/{e=$4} END{printf "%s\t%s\t%s\t%s\t%s\n", n, r, p50, p99, (e==""?0:e)}'; }
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf "scenario\treq/s\tp50\tp99\tnon2xx\n"
for r in $(seq "$REPEAT"); do
  run "get_by_id_admin" "$CONNS" -H "Authorization: Bearer $KEY" "$URL"
  run "get_by_id_user_PRIVATE" "$CONNS" -H "Authorization: Bearer $USER_AT" "$URL"
done
for r in $(seq "$REPEAT"); do
  run "password_signin" 8 -s "$WORK/signin.lua" "$B/auth/v1/signin?client_id=default"
done
echo "server peak RSS: $(awk '/VmHWM/{print $2/1024 " MB"}' /proc/$PID/status)"
