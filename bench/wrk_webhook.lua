-- wrk_webhook.lua - POSTs valid webhook envelopes with distinct event ids
-- (or one id again and again when DUPLICATE=1), for every peer alike.
--   wrk -s bench/wrk_webhook.lua http://127.0.0.1:PORT/api/v1/webhook/orders
local threads, next_tid = {}, 0
local base = (os.time() % 1000000) * 1000000000

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  duplicate = os.getenv("DUPLICATE") == "1"
  sku = os.getenv("BENCH_SKU") or "bench-other-sku"
  event_type = os.getenv("BENCH_EVENT_TYPE") or "order.received"
  headers = {["Content-Type"] = "application/json"}
end

function request()
  counter = counter + 1
  local id = duplicate and base or (base + (tid + 1) * 100000000 + counter)
  local body = string.format(
    '{"event_id":%d,"event_type":"%s","payload":{"order_id":"bench-order-%d",' ..
    '"service_sku_id":"%s","seller_agent_id":"bench-seller","buyer_agent_id":"bench-buyer",' ..
    '"price":20,"requirement":{}},"created_at":"2026-12-03T00:00:00.000Z"}',
    id, event_type, id, sku)
  return wrk.format("POST", nil, headers, body)
end
