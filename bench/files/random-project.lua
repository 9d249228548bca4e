-- wrk: each request asks for a different project page, so that a cache
-- only helps as much as the index's spread of projects allows.
local projects = tonumber(os.getenv("BENCH_PROJECTS"))

request = function()
  return wrk.format(nil, string.format("/simple/bench-pkg-%04d/", math.random(0, projects - 1)))
end
