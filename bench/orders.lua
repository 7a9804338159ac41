-- orders.lua DIR - the fulfillment figures of `make bench`, through the
-- sandbox and a real `skudemo serve`, printed as table rows
-- ("measure|figure|detail|against" a line):
--   overhead per order, webhook in to complete out, zero-latency model;
--   200 orders at once with a 2 s image model: time to deliver all, peak RSS.
package.path = "tests/lib/?.lua;scripts/?.lua;" .. package.path
local world = require "world"
local json, time = require "json", require "time"

local N = tonumber(os.getenv("BENCH_ORDERS")) or 200
local function progress(fmt, ...) io.stderr:write(string.format(fmt, ...), "\n") end

local function pct(sorted, p)
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

local function rss_kb(pid, field)
  local f = io.open("/proc/" .. pid .. "/status")
  local text = f and f:read("a") or ""
  if f then f:close() end
  return tonumber(text:match(field .. ":%s+(%d+)")) or 0
end

local function ms(iso) return time.parse_iso(iso) end

-- 1. overhead: orders one after another, a model that answers at once
local function overhead()
  local w = world.start{name = "bench-overhead", env = {LOG_LEVEL = "warn"}}
  local took = {}
  for i = 1, N do
    local order = w:order_and_say("a blue tech-style cover image, number " .. i)
    w:wait_status(order.id, "pending_confirmation", 30000)
    local sent
    for _, e in ipairs(w:control("GET", "/events?order_id=" .. order.id).events) do
      if e.event_type == "message.received" and e.agent_id == w.info.seller.agent_id then
        local a = e.attempts[1]
        sent = ms(a.at) - a.took_ms
      end
    end
    local done
    for _, c in ipairs(w:calls{order_id = order.id}) do
      if c.route == "/api/orders/{id}/complete" and c.status == 200 then done = ms(c.at) end
    end
    took[#took + 1] = done - sent
    if i % 50 == 0 then progress("  overhead: %d/%d orders", i, N) end
  end
  w:stop()
  table.sort(took)
  print(string.format("fulfillment overhead per order (webhook in to complete out)|p50 %d ms, p99 %d ms|%d orders one after another, zero-latency sandbox model|goal p99 < 50 ms",
    pct(took, 0.5), pct(took, 0.99), #took))
end

-- 2. N orders at once, a 2 s image model
local function burst()
  local workers = tonumber(os.getenv("BENCH_WORKERS")) or 256
  local w = world.start{name = "bench-burst", env = {LOG_LEVEL = "warn", POOL_WORKERS = workers}}
  w:model{image_latency_ms = 2000, text_latency_ms = 0}
  local orders = {}
  for i = 1, N do
    orders[i] = w.buyer:place_order(w.sku, nil)
  end
  progress("  burst: %d orders placed", N)
  for _, o in ipairs(orders) do w:wait_status(o.id, "in_progress", 60000) end
  progress("  burst: all accepted; the buyers ask now")
  local started = time.mono()
  for i, o in ipairs(orders) do w.buyer:message(o.id, "a green poster of a lighthouse, number " .. i) end
  local sent = time.mono() - started
  local delivered = 0
  local deadline = started + 120000
  while delivered < N and time.mono() < deadline do
    delivered = 0
    for _, c in ipairs(w:calls{}) do
      if c.route == "/api/orders/{id}/complete" and c.status == 200 then delivered = delivered + 1 end
    end
    if delivered < N then time.sleep(100) end
  end
  local took = time.mono() - started
  local peak = rss_kb(w.server.pid, "VmHWM")
  w:stop()
  print(string.format("%d orders at once, 2 s image model|%s in %.1f s|messages sent in %.1f s; %d workers; peak RSS %.1f MB|goal < 6 s, peak RSS < 150 MB",
    N, delivered == N and "all delivered" or (delivered .. " delivered"), took / 1000, sent / 1000, workers, peak / 1024))
end

local which = arg[2] or "all"
if which == "all" or which == "overhead" then overhead() end
if which == "all" or which == "burst" then burst() end
