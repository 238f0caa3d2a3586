-- wrk script: every request carries one of BENCH_SESSIONS session cookies
-- (bench-0 .. bench-N-1, the ones bench_seed wrote), picked at random, so the
-- sidecar's lookups spread over the whole table like real traffic.
local n = tonumber(os.getenv("BENCH_SESSIONS") or "1000")
local method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
local with_cookie = os.getenv("BENCH_NO_COOKIE") == nil

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 1000)
end

function request()
  local headers = {}
  if with_cookie then
    headers["Cookie"] = "session_id=bench-" .. math.random(0, n - 1)
  end
  if body then
    headers["Content-Type"] = "application/json"
  end
  return wrk.format(method, nil, headers, body)
end
