-- webhook.lua - order events in: `POST WEBHOOK_PATH` (CONTRACT.md section 2)
-- and the events feed (backstop.lua) share `intake`.
--
-- The handler checks the signature on the raw body when WEBHOOK_SECRET is
-- set (401, nothing stored), validates the envelope (400 with the reason),
-- commits the event and its job together (in the group transaction of the
-- events arriving at the same time), and answers 2xx only once that commit
-- is durable (DESIGN.md rule 1). A repeated
-- event_id changes nothing and is answered the same way. The work runs as
-- jobs (pipeline.lua); this handler stays small, it is on the platform's clock.
local json, crypto, store, pool, log, metrics =
  require "json", require "crypto", require "store", require "pool", require "log", require "metrics"
local settings, records, orders = require "settings", require "records", require "orders"

local W = {}

local MAX_EVENT_ID = 2 ^ 53

-- The value of a request header, whatever the case of its name.
function W.header(req, name)
  local h = req.headers or {}
  return h[name:lower()] or h[name]
end

-- Whether the raw body carries the right X-Webhook-Signature: lowercase hex
-- HMAC-SHA256 of the body keyed with the secret, compared in constant time.
function W.signature_ok(signature, raw, secret)
  if type(signature) ~= "string" or #signature ~= 64 then return false end
  return crypto.equal(signature:lower(), crypto.hmac_sha256(secret, raw))
end

-- The envelope in a raw body, or nil and the reason it is refused.
function W.validate(raw)
  if type(raw) ~= "string" or raw == "" then return nil, "empty body" end
  local envelope, err = json.decode(raw)
  if envelope == nil then return nil, "body is not valid JSON: " .. tostring(err) end
  if type(envelope) ~= "table" or json.is_array(envelope) then return nil, "body must be a JSON object" end
  local id = envelope.event_id
  if type(id) ~= "number" or id ~= math.floor(id) or id < 0 or id > MAX_EVENT_ID then
    return nil, "event_id must be a non-negative integer"
  end
  envelope.event_id = math.tointeger(id)
  local kind = envelope.event_type
  if type(kind) ~= "string" or not kind:match("^[%w][%w%._%-]*$") or #kind > 100 then
    return nil, "event_type must be a non-empty string such as \"order.received\""
  end
  if envelope.payload == nil or envelope.payload == json.null then
    envelope.payload = {}
  elseif type(envelope.payload) ~= "table" or json.is_array(envelope.payload) then
    return nil, "payload must be a JSON object"
  end
  if envelope.created_at ~= nil and envelope.created_at ~= json.null and type(envelope.created_at) ~= "string" then
    return nil, "created_at must be a string"
  end
  return envelope
end

-- Stores an event and queues its job. Returns true when the event is new.
-- Both join the group transaction of the events arriving now (store.group):
-- when intake returns, or in a handler before its response is sent, they
-- are committed and durable, so nothing is acknowledged before that.
function W.intake(envelope, raw, source)
  local needs_job = orders.needs_job(envelope, settings.SERVICE_SKU_ID)
  local outcome
  if not needs_job then
    outcome = envelope.event_type == "order.received" and "ignored: other SKU" or "stored"
  end
  return store.group(function()
    local new = records.insert_event(envelope, raw, source, outcome)
    if new and needs_job then
      pool.submit("event", {event_id = envelope.event_id},
                  {key = "event:" .. envelope.event_id, max_attempts = settings.JOB_ATTEMPTS + 5})
    end
    return new
  end)
end

local JSON = {["content-type"] = "application/json"}

-- Event types labelled by name on /metrics (CONTRACT.md); any other is
-- "other", so a stream of invented types cannot grow the series.
W.known_types = {}
for kind in ([[order.received order.accepted order.rejected order.completed order.confirmed order.cancelled
               message.received dispute.raised dispute.resolved uat.received]]):gmatch("%S+") do
  W.known_types[kind] = true
end

metrics.help("skudemo_webhook_events_total", "Webhook events by type and outcome (new, duplicate, rejected).")

local function count(kind, outcome)
  metrics.inc("skudemo_webhook_events_total", {type = W.known_types[kind] and kind or
                                               (kind and "other" or "unknown"), outcome = outcome})
end

-- The route handler.
function W.handle(req)
  local raw = req.body or ""
  local secret = settings.WEBHOOK_SECRET
  if secret ~= "" and not W.signature_ok(W.header(req, "X-Webhook-Signature"), raw, secret) then
    log.warn("webhook refused: missing or wrong signature", {remote = req.remote})
    count(nil, "rejected")
    return 401, JSON, {success = false, error = "missing or invalid X-Webhook-Signature"}
  end
  local envelope, why = W.validate(raw)
  if not envelope then
    count(nil, "rejected")
    return 400, JSON, {success = false, error = why}
  end
  local new = W.intake(envelope, raw, "webhook")
  count(envelope.event_type, new and "new" or "duplicate")
  return 200, JSON, {success = true, event_type = envelope.event_type, event_id = envelope.event_id,
                     duplicate = not new}
end

W.routes = {
  {"POST", settings.WEBHOOK_PATH, W.handle},
}

return W
