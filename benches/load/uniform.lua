-- wrk script: GET a listing's values, ids uniform over 1..UNIFORM_N (200000).
local n = tonumber(os.getenv("UNIFORM_N") or "200000")

-- Each run draws its own sequence: unseeded, every run of wrk would replay the same
-- requests, and a measured run after a warm-up would find every one of them cached.
math.randomseed(os.time() + tonumber(os.getenv("UNIFORM_SEED") or "0"))

function setup(thread)
  thread:set("seed", math.random(1, 2^31 - 1))
end

function init(args)
  math.randomseed(seed)
end

function request()
  return wrk.format("GET", "/api/v2/marketplace/listings/" .. math.random(1, n) .. "/attributes")
end
