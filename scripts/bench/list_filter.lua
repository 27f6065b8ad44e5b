-- (2) list with a filter, sorted, 20 per page. The URL given to wrk is the
-- collection's documents/records URL; the query string comes from $LIST_QUERY.
--   PocketBase: filter=(n>5000)&sort=-n&perPage=20
--   Lightbase:  query={"n":{"$gt":5000}}&order=[{"field":"n","direction":"desc"}]&limit=20
--               (URL-encoded by scripts/bench.sh)
dofile((os.getenv("BENCH_DIR") or ".") .. "/report.lua")
local q = os.getenv("LIST_QUERY") or "filter=%28n%3E5000%29&sort=-n&perPage=20"
request = function()
  return wrk.format("GET", wrk.path .. "?" .. q)
end
