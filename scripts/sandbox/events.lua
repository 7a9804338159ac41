-- sandbox/events.lua - marketplace events: stored with an increasing integer
-- event_id in CONTRACT.md's envelope, POSTed to the agent's webhook_url
-- (signed when it has a secret) by pool jobs that retry on the configured
-- schedule, and served from the events feed until delivered or acknowledged.
--
--   local batch = events.batch()
--   store.transaction(function() ... batch:emit({order.buyer_id}, "order.accepted", payload) end)
--   batch:dispatch()      -- after the commit: queue the deliveries
local config = require "config"
local crypto = require "crypto"
local http = require "http"
local json = require "json"
local log = require "log"
local pool = require "pool"
local store = require "store"
local time = require "time"
local db = require "sandbox.db"
local web = require "sandbox.web"
local agents = require "sandbox.agents"

local events = {}

-- The delivery retry schedule in ms: delay before attempt 2, 3, ...
function events.retry_schedule()
  local out = {}
  for n in config.get("SANDBOX_WEBHOOK_RETRY_MS", "1000,5000,30000,120000,600000"):gmatch("%d+") do
    out[#out + 1] = math.tointeger(tonumber(n))
  end
  return out
end

local Batch = {}
Batch.__index = Batch

function events.batch()
  return setmetatable({queued = {}}, Batch)
end

-- How many times the next delivery goes out (0 = dropped), consuming the
-- control API's drop and duplicate counters. Runs in the caller's
-- transaction, only for an agent that has a webhook_url.
local function copies_to_send()
  if db.setting("webhook_drop_all") == "1" then return 0 end
  local drop = db.setting_int("webhook_drop", 0)
  if drop > 0 then
    db.set_setting("webhook_drop", drop - 1)
    return 0
  end
  local duplicate = db.setting_int("webhook_duplicate", 0)
  if duplicate > 0 then
    db.set_setting("webhook_duplicate", duplicate - 1)
    return 2
  end
  return 1
end

-- Stores one event per recipient (call inside a transaction); the deliveries
-- are queued by dispatch() once the transaction has committed.
function Batch:emit(recipients, event_type, payload)
  for _, agent_id in ipairs(recipients) do
    local created_at = time.iso()
    local _, event_id = store.exec(
      "INSERT INTO events (agent_id, event_type, order_id, envelope, created_at) VALUES (?, ?, ?, '', ?)",
      agent_id, event_type, payload.order_id, created_at)
    local envelope = json.encode({event_id = event_id, event_type = event_type, payload = payload,
                                  created_at = created_at})
    local agent = agents.get(agent_id)
    local copies, delivery = 0, "no_webhook"
    if agent.webhook_url then
      copies = copies_to_send()
      delivery = copies == 0 and "dropped" or "pending"
    end
    store.exec("UPDATE events SET envelope = ?, delivery = ? WHERE event_id = ?", envelope, delivery, event_id)
    self.queued[#self.queued + 1] = {event_id = event_id, copies = copies}
  end
end

function Batch:dispatch()
  local attempts = #events.retry_schedule() + 3
  for _, q in ipairs(self.queued) do
    for copy = 1, q.copies do
      pool.submit("deliver_event", {event_id = q.event_id, copy = copy},
                  {key = string.format("deliver:%d:%d", q.event_id, copy), max_attempts = attempts})
    end
  end
  self.queued = {}
end

local function record_attempt(event_id, copy, attempt, url, status, err, took)
  store.exec("INSERT INTO deliveries (event_id, copy, attempt, url, status, error, took_ms, at) "
             .. "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", event_id, copy, attempt, url, status, err, took, time.iso())
end

local function set_delivery(event_id, state)
  store.exec("UPDATE events SET delivery = ? WHERE event_id = ? AND delivery <> 'delivered'", state, event_id)
end

-- Pool job: one delivery attempt of one copy of an event.
function events.deliver(payload)
  local event = store.row("SELECT * FROM events WHERE event_id = ?", payload.event_id)
  if not event or event.acked_at then return end
  local copy = math.tointeger(payload.copy) or 1
  local done = store.row("SELECT COUNT(*) AS n FROM deliveries WHERE event_id = ? AND copy = ?",
                         event.event_id, copy)
  local attempt = done.n + 1
  local agent = agents.get(event.agent_id)
  local url = agent and agent.webhook_url
  if not url then
    record_attempt(event.event_id, copy, attempt, nil, nil, "no webhook_url", 0)
    set_delivery(event.event_id, "no_webhook")
    return
  end
  local headers = {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "AgentMarket-Sandbox/1.0",
    ["X-Event-Id"] = tostring(event.event_id),
    ["X-Event-Type"] = event.event_type,
  }
  if agent.webhook_secret then
    headers["X-Webhook-Signature"] = crypto.hmac_sha256(agent.webhook_secret, event.envelope)
  end
  local started = time.mono()
  local res, err = http.request{method = "POST", url = url, headers = headers, body = event.envelope,
                                timeout = config.int("SANDBOX_WEBHOOK_TIMEOUT_MS", 5000)}
  local took = time.mono() - started
  local status = res and res.status
  local ok = status and status >= 200 and status < 300
  if res and not ok then err = "answered " .. status end
  record_attempt(event.event_id, copy, attempt, url, status, err, took)
  log.info("webhook delivery", {event_id = event.event_id, event_type = event.event_type, copy = copy,
                                attempt = attempt, status = status or 0, took_ms = took,
                                error = err, url = url})
  if ok then
    set_delivery(event.event_id, "delivered")
    return
  end
  local schedule = events.retry_schedule()
  if attempt > #schedule then
    set_delivery(event.event_id, "failed")
    log.warn("webhook delivery given up", {event_id = event.event_id, attempts = attempt})
    return
  end
  set_delivery(event.event_id, "retrying")
  pool.retry_in(schedule[attempt], "webhook delivery failed: " .. tostring(err))
end

local function envelope_of(event)
  return json.decode(event.envelope)
end

-- GET /events/me/events: the caller's events neither delivered nor
-- acknowledged, oldest first, as a bare array of envelopes.
local function feed(req)
  local agent = agents.authenticate(req)
  local q = web.query(req)
  local after = web.query_int(q, "last_event_id", 0, 0)
  local limit = web.query_int(q, "limit", 50, 1, 100)
  local rows = store.query(
    "SELECT envelope FROM events WHERE agent_id = ? AND event_id > ? AND acked_at IS NULL "
    .. "AND delivery <> 'delivered' ORDER BY event_id LIMIT ?", agent.id, after, limit)
  local out = json.array()
  for _, row in ipairs(rows) do out[#out + 1] = envelope_of(row) end
  return web.json(200, out)
end

-- POST /events/me/events/ack {"event_ids": [...]}
local function ack(req)
  local agent = agents.authenticate(req)
  local body = web.body(req)
  local ids = body.event_ids
  if type(ids) ~= "table" or (next(ids) ~= nil and #ids == 0) or #ids > 1000 then
    web.fail(400, "event_ids must be an array of at most 1000 event ids", "validation_error",
             {field = "event_ids"})
  end
  for i = 1, #ids do
    if not math.tointeger(ids[i]) then
      web.fail(400, "event_ids must hold integers", "validation_error", {field = "event_ids"})
    end
  end
  local acknowledged = 0
  local now = time.iso()
  store.transaction(function()
    for i = 1, #ids do
      acknowledged = acknowledged + store.exec(
        "UPDATE events SET acked_at = ? WHERE event_id = ? AND agent_id = ? AND acked_at IS NULL",
        now, math.tointeger(ids[i]), agent.id)
    end
  end)
  return web.json(200, {success = true, acknowledged = acknowledged})
end

-- Every event with its delivery attempts, for GET /_sandbox/events.
function events.inspect(order_id)
  local rows
  if order_id then
    rows = store.query("SELECT * FROM events WHERE order_id = ? ORDER BY event_id", order_id)
  else
    rows = store.query("SELECT * FROM events ORDER BY event_id")
  end
  local out = json.array()
  for _, row in ipairs(rows) do
    local attempts = json.array()
    for _, d in ipairs(store.query("SELECT * FROM deliveries WHERE event_id = ? ORDER BY id", row.event_id)) do
      attempts[#attempts + 1] = {copy = d.copy, attempt = d.attempt, url = d.url or json.null,
                                 status = d.status or json.null, error = d.error or json.null,
                                 took_ms = d.took_ms, at = d.at}
    end
    local envelope = envelope_of(row)
    out[#out + 1] = {
      event_id = row.event_id, event_type = row.event_type, agent_id = row.agent_id,
      order_id = row.order_id or json.null, payload = envelope.payload, created_at = row.created_at,
      delivery = row.delivery, acked = row.acked_at ~= nil, acked_at = row.acked_at or json.null,
      attempts = attempts,
    }
  end
  return out
end

events.routes = {
  {"GET", "/api/events/me/events", feed},
  {"POST", "/api/events/me/events/ack", ack},
}

events.jobs = {deliver_event = events.deliver}

return events
