-- (3) create one document/record: POST JSON {title, n, owner} to the URL given to wrk.
-- n is random in [0, 20000). CREATE_WRAP selects the body shape:
--   (unset)  PocketBase  POST …/api/collections/posts/records   {"title":…,"n":…,"owner":…}
--   data     Lightbase   POST …/collections/posts/documents     {"data":[{"title":…,"n":…,"owner":…}]}
dofile((os.getenv("BENCH_DIR") or ".") .. "/report.lua")
local wrap = os.getenv("CREATE_WRAP") or ""
local counter = 0
init = function(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end
request = function()
  counter = counter + 1
  local n = math.random(0, 19999)
  local doc = string.format('{"title":"bench post %d","n":%d,"owner":"user%d"}',
                            counter, n, n % 100)
  local body = doc
  if wrap == "data" then body = '{"data":[' .. doc .. ']}' end
  wrk.headers["Content-Type"] = "application/json" -- wrk.headers also carries $BENCH_AUTH
  return wrk.format("POST", nil, nil, body)
end
