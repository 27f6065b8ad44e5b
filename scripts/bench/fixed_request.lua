-- One fixed request, repeated: the URL given to wrk, plus from the environment
--   REQ_METHOD (GET)   REQ_BODY (none; sent as application/json)   REQ_AUTH (an Authorization value)
-- Used by auth_overhead.sh for GET by id (admin key / user token), password sign-in on both
-- servers and PocketBase's auth-refresh (PocketBase does not rotate, so one token serves).
dofile((os.getenv("BENCH_DIR") or ".") .. "/report.lua")
wrk.method = os.getenv("REQ_METHOD") or "GET"
local body = os.getenv("REQ_BODY")
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
local auth = os.getenv("REQ_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
