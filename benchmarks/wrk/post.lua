-- wrk script: POST the bodies of $WRK_BODIES (one JSON document per line) in turn, then print
-- one JSON line of totals and latency percentiles (microseconds) for benchmarks/serving.py.
local bodies = {}
for line in io.lines(os.getenv("WRK_BODIES")) do
  bodies[#bodies + 1] = line
end
local next_body = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local authorization = os.getenv("WRK_AUTHORIZATION")
if authorization and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end

request = function()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[next_body])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "socket_errors": %d, "status_errors": %d, "duration_us": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
