-- Lightbase token refresh under load: POST /auth/v1/token {"grant_type":"refresh_token",
-- "refresh_token":…}. Refresh tokens ROTATE (every reply carries a new one, the old one is dead,
-- and presenting a spent one revokes the session), so each wrk thread keeps a pool of live
-- tokens: setup() seeds thread i with RT_PER_THREAD tokens (lines of RT_FILE, one per connection
-- of that thread) plus one spare, request() pops one, response() takes the new refresh_token out
-- of the reply and pushes it back. The spare is there because wrk 4 calls request() once in the
-- first thread's state to verify the script and never sends that request: without it the first
-- thread would be one token short for the whole run. RT_FILE needs threads * (RT_PER_THREAD + 1). A non-2xx reply or an empty pool is counted and printed by done() in a
-- `REFRESH …` line (an empty pool sends a dead token on purpose, so it shows up as non-2xx too).
dofile((os.getenv("BENCH_DIR") or ".") .. "/report.lua")
local report_done = done

local file = assert(os.getenv("RT_FILE"), "RT_FILE (refresh tokens, one a line) must be set")
local per = assert(tonumber(os.getenv("RT_PER_THREAD")), "RT_PER_THREAD must be set")
local all = {}
for line in io.lines(file) do
  if line ~= "" then all[#all + 1] = line end
end
local threads = {}

function setup(thread)
  local i = #threads
  local n = per + 1
  assert((i + 1) * n <= #all, string.format("RT_FILE has %d tokens, thread %d needs %d", #all, i + 1, n))
  local pool = {}
  for k = 1, n do pool[k] = all[i * n + k] end
  thread:set("pool", pool)
  threads[#threads + 1] = thread
end

function init(args)
  ok, bad, empty, unparsed = 0, 0, 0, 0
end

function request()
  local rt = table.remove(pool)
  if rt == nil then
    empty = empty + 1
    rt = "pool-empty"
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
    '{"grant_type":"refresh_token","refresh_token":"' .. rt .. '"}')
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
    return
  end
  local rt = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if rt then
    ok = ok + 1
    pool[#pool + 1] = rt
  else
    unparsed = unparsed + 1
  end
end

function done(summary, latency, requests)
  report_done(summary, latency, requests)
  local o, b, e, u = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    o, b, e, u = o + t:get("ok"), b + t:get("bad"), e + t:get("empty"), u + t:get("unparsed")
  end
  io.write(string.format("REFRESH rotated=%d non200=%d pool_empty=%d unparsed=%d\n", o, b, e, u))
end
