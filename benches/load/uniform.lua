-- wrk script: GET a listing's values, ids uniform over 1..UNIFORM_N (200000).
local n = tonumber(os.getenv("UNIFORM_N") or "200000")

function setup(thread)
  thread:set("seed", math.random(1, 2^31 - 1))
end

function init(args)
  math.randomseed(seed)
end

function request()
  return wrk.format("GET", "/api/v2/marketplace/listings/" .. math.random(1, n) .. "/attributes")
end
