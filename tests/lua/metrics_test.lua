package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local metrics = require "metrics"

t.test("metrics: counters by label set, sorted and escaped", function()
  metrics.inc("t_requests_total", {status = 200, route = "/a"})
  metrics.inc("t_requests_total", {route = "/a", status = 200}, 2)
  metrics.inc("t_requests_total", {route = 'we"ird\n', status = 500})
  t.eq(metrics.get("t_requests_total", {status = 200, route = "/a"}), 3)
  local text = metrics.render()
  t.match(text, '# TYPE t_requests_total counter\n')
  t.match(text, 't_requests_total{route="/a",status="200"} 3\n', "plain")
  t.match(text, 't_requests_total{route="we\\"ird\\n",status="500"} 1\n', "escaped")
end)

t.test("metrics: histograms have cumulative buckets, sum and count", function()
  metrics.help("t_latency_seconds", "Latency of things.")
  metrics.observe("t_latency_seconds", {kind = "x"}, 0.003)
  metrics.observe("t_latency_seconds", {kind = "x"}, 0.2)
  local count, sum = metrics.get("t_latency_seconds", {kind = "x"})
  t.eq(count, 2)
  t.ok(math.abs(sum - 0.203) < 1e-9)
  local text = metrics.render()
  t.match(text, "# HELP t_latency_seconds Latency of things.\n")
  t.match(text, 't_latency_seconds_bucket{kind="x",le="0.005"} 1\n')
  t.match(text, 't_latency_seconds_bucket{kind="x",le="0.25"} 2\n')
  t.match(text, 't_latency_seconds_bucket{kind="x",le="%+Inf"} 2\n')
  t.match(text, 't_latency_seconds_count{kind="x"} 2\n')
end)

t.test("metrics: gauges and series without labels", function()
  metrics.set("t_queue_depth", nil, 7)
  metrics.set("t_queue_depth", nil, 4)
  t.eq(metrics.get("t_queue_depth"), 4)
  t.match(metrics.render(), "\nt_queue_depth 4\n")
end)

t.test("metrics: misuse raises", function()
  t.raises(function() metrics.inc() end)
  t.raises(function() metrics.observe("x", {}, "not a number") end)
end)

return t.done()
