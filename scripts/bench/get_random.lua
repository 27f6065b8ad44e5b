-- (1b, optional) GET a random document by id, ids read from $IDS_FILE (one a line).
-- The URL given to wrk is the collection's documents/records URL; "/<id>" is appended.
dofile((os.getenv("BENCH_DIR") or ".") .. "/report.lua")
local ids = {}
for line in io.lines(assert(os.getenv("IDS_FILE"), "IDS_FILE not set")) do
  if #line > 0 then ids[#ids + 1] = line end
end
local base_path
init = function(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end
request = function()
  base_path = base_path or wrk.path
  return wrk.format("GET", base_path .. "/" .. ids[math.random(#ids)])
end
