-- backstop.lua - what keeps fulfillment going when webhooks are not enough:
--
--   events_feed  reads GET /events/me/events from the last id it saw, stores
--                what is new (the same intake as the webhook) and acknowledges
--                it, every EVENTS_POLL_INTERVAL_MS (DESIGN.md rule 4)
--   heartbeat    POST /agents/heartbeat every HEARTBEAT_INTERVAL_MS, so buyers
--                see the seller online
--   reconcile    at start, our orders in pending_accept or in_progress are
--                compared with the platform and picked up where they stand
--
-- The two loops are chains of delayed jobs: each run queues the next one in
-- the same transaction that moves the chain's sequence number on, so a
-- restart neither breaks a chain nor starts a second one.
local pool, store, json, log, time = require "pool", require "store", require "json", require "log", require "time"
local settings, records, market, webhook, pipeline, orders =
  require "settings", require "records", require "market", require "webhook", require "pipeline", require "orders"

local B = {}

B.loops = {
  events_feed = "EVENTS_POLL_INTERVAL_MS",
  heartbeat = "HEARTBEAT_INTERVAL_MS",
}

local function chain_seq(name)
  return tonumber(records.get("chain:" .. name)) or 0
end

-- Queues run number seq of a loop (no-op when that run exists already).
local function queue_run(name, seq, delay)
  return pool.submit(name, {seq = seq}, {key = name .. ":" .. seq, delay = delay, max_attempts = 3})
end

-- Runs one turn of a loop, then queues the next turn. The body's errors
-- are logged, never raised: a loop must not die of one bad turn.
local function loop_turn(name, body, payload)
  local seq = chain_seq(name)
  if payload.seq and payload.seq ~= seq then return end        -- a stale link
  local ok, err = pcall(body)
  if not ok then log.warn(name .. " turn failed", {error = tostring(err)}) end
  if payload.once then return end
  store.transaction(function()
    records.put("chain:" .. name, seq + 1)
    queue_run(name, seq + 1, settings.value(B.loops[name]))
  end)
end

-- One read of the events feed.
function B.read_feed()
  local cursor = tonumber(records.get("events_feed_cursor")) or 0
  local events, failure = market.events(cursor, 50)
  if not events then error(failure.message) end
  local stored, last = {}, cursor
  for _, envelope in ipairs(events) do
    local raw = type(envelope) == "table" and json.encode(envelope)
    local valid, why = raw and webhook.validate(raw)
    if valid then
      if webhook.intake(valid, raw, "feed") then
        log.info("event from the feed", {event_id = valid.event_id, event_type = valid.event_type})
      end
      stored[#stored + 1] = valid.event_id
      if valid.event_id > last then last = valid.event_id end
    else
      log.warn("events feed: invalid event skipped", {error = why})
    end
  end
  if #stored == 0 then return end
  store.sync()
  local ok, ack_failure = market.ack(stored)
  if not ok then error("ack: " .. ack_failure.message) end
  records.put("events_feed_cursor", last)
  if #events >= 50 then return B.read_feed() end
end

function B.events_feed(payload)
  loop_turn("events_feed", B.read_feed, payload)
end

function B.heartbeat(payload)
  loop_turn("heartbeat", function()
    local ok, failure = market.heartbeat()
    if not ok then error(failure.message) end
  end, payload)
end

-- Brings one order of ours in line with the platform's view of it.
local function reconcile_order(o)
  local order_id = tostring(o.id)
  local sku = settings.SERVICE_SKU_ID
  local order = records.order(order_id)
  if not order then
    if sku == "" or (tostring(o.service_sku_id) ~= sku and tostring(o.listing_id) ~= sku) then return end
    order = records.ensure_order{order_id = order_id, ours = true, service_sku_id = sku,
                                 buyer_id = o.buyer_id and tostring(o.buyer_id), price = o.price,
                                 state = "pending_accept"}
    records.note(order_id, "received", "found at start-up reconciliation")
  end
  if order.ours ~= 1 or order.stopped == 1 then return end
  local status = o.status
  store.transaction(function()
    if status == "cancelled" or status == "in_dispute" then
      records.update_order(order_id, {state = orders.advance(order.state, status), stopped = 1,
                                      needs_human = "order " .. status .. " (seen at reconciliation)"})
      records.note(order_id, "stopped", status)
    elseif status == "pending_accept" then
      pipeline.submit("accept", {order_id = order_id}, "accept:" .. order_id .. ":" .. time.now())
    elseif status == "in_progress" then
      if not order.accepted_at then
        records.update_order(order_id, {state = "in_progress", accepted_at = time.now()})
        records.note(order_id, "accepted", "seen at reconciliation")
      end
      if not order.guidance_at and not order.task_id then
        pipeline.submit("reply", {order_id = order_id, key = "guidance:" .. order_id, template = "guidance"},
                        "reply:guidance:" .. order_id)
      end
    elseif status then
      records.update_order(order_id, {state = orders.advance(order.state, status)})
    end
  end)
end

-- Job `reconcile`: at start, our open orders against the platform.
function B.reconcile()
  local seen = {}
  for _, status in ipairs{"pending_accept", "in_progress"} do
    local list, failure = market.orders{role = "seller", status = status}
    if not list then error("listing " .. status .. " orders: " .. failure.message) end
    for _, o in ipairs(list) do
      if type(o) == "table" and o.id then
        seen[tostring(o.id)] = true
        reconcile_order(o)
      end
    end
  end
  -- ours that the platform no longer lists as open: read each one
  for _, state in ipairs{"pending_accept", "in_progress"} do
    for _, order in ipairs(records.orders(state, 500)) do
      if order.ours == 1 and order.stopped == 0 and not seen[order.order_id] then
        local o = market.order(order.order_id)
        if o then reconcile_order(o) end
      end
    end
  end
end

-- Starts the loops and the reconciliation (app.started).
function B.start()
  local now = time.now()
  for name in pairs(B.loops) do
    local _, new = queue_run(name, chain_seq(name), 0)
    if not new then pool.submit(name, {once = true}, {key = name .. ":start:" .. now, max_attempts = 1}) end
  end
  pool.submit("reconcile", {}, {key = "reconcile:" .. now, max_attempts = 5})
end

B.jobs = {
  events_feed = B.events_feed,
  heartbeat = B.heartbeat,
  reconcile = B.reconcile,
}

return B
