-- wrk script: GET a listing's values, ranks drawn from a Zipf(s) distribution over 1..N
-- (rank 1 most popular), as real traffic to listing pages is. A rank is mapped to an id by a
-- fixed permutation of 1..N, so popular listings are not neighbours (the service caches
-- listings by pages of neighbouring ids: neighbouring hot ids would flatter it). N and s
-- from the environment: ZIPF_N (200000), ZIPF_S (1.0).
local n = tonumber(os.getenv("ZIPF_N") or "200000")
local s = tonumber(os.getenv("ZIPF_S") or "1.0")
local cdf = {}

-- Each run draws its own sequence: unseeded, every run of wrk would replay the same
-- requests, and a measured run after a warm-up would find every one of them cached.
math.randomseed(os.time() + tonumber(os.getenv("ZIPF_SEED") or "0"))

function setup(thread)
  thread:set("seed", math.random(1, 2^31 - 1))
end

function init(args)
  math.randomseed(seed)
  local total = 0
  for k = 1, n do
    total = total + 1 / (k ^ s)
    cdf[k] = total
  end
  for k = 1, n do
    cdf[k] = cdf[k] / total
  end
end

local function draw()
  local u = math.random()
  local low, high = 1, n
  while low < high do
    local mid = math.floor((low + high) / 2)
    if cdf[mid] < u then low = mid + 1 else high = mid end
  end
  return low
end

-- 104729 is prime, so coprime with N unless N is a multiple of it: rank -> id is a bijection.
local function id_of(rank)
  return (rank * 104729) % n + 1
end

function request()
  return wrk.format("GET", "/api/v2/marketplace/listings/" .. id_of(draw()) .. "/attributes")
end
