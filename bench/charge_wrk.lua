-- wrk script for bench/charge_latency_bench.py --load wrk: each request a charge with its own
-- Idempotency-Key on the next stay (round-robin per thread), or GET /healthz with "baseline".
-- Arguments after "--": api key, article id, comma-separated deal ids, tag, "charge" | "baseline", and the
-- number of wrk threads (each thread runs its own Lua state: it cannot count the others itself).
local created = 0

function setup(thread)
  thread:set("tid", created)
  created = created + 1
end

function init(args)
  key, article, tag, mode, stride = args[1], args[2], args[4], args[5], tonumber(args[6])
  deals = {}
  for deal in string.gmatch(args[3], "[^,]+") do
    table.insert(deals, deal)
  end
  body = '{"amount": "10.00", "article_id": ' .. article .. ', "reason": "bench"}'
  counter = 0
end

function request()
  if mode == "baseline" then
    return wrk.format("GET", "/healthz")
  end
  counter = counter + 1
  -- Thread t takes stays t, t + stride, t + 2 × stride, …: every stay in turn, as the Python clients do.
  local deal = deals[((counter - 1) * stride + tid) % #deals + 1]
  return wrk.format("POST", "/api/v1/deals/" .. deal .. "/stay/charges", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "wrk-" .. tag .. "-" .. tid .. "-" .. counter,
  }, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"p50": %d, "p95": %d, "p99": %d, "max": %d, "requests": %d, "non_2xx": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "timeout": %d, "duration_us": %d}\n',
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    summary.requests, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.duration))
end
