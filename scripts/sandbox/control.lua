-- sandbox/control.lua - the sandbox's own control API under /_sandbox (no
-- auth: the sandbox listens on loopback): fault injection, webhook drop and
-- duplication, model latency, the call log, the event log, extra agents
-- and the arbitration of disputes.
local crypto = require "crypto"
local store = require "store"
local time = require "time"
local db = require "sandbox.db"
local web = require "sandbox.web"
local events = require "sandbox.events"
local faults = require "sandbox.faults"
local orders = require "sandbox.orders"

local control = {}

local function add_fault(req)
  local fault = faults.parse(web.body(req))
  fault.id = faults.add(fault)
  return web.json(201, {fault = fault})
end

local function list_faults()
  return web.json(200, {faults = faults.list()})
end

local function clear_faults()
  faults.clear()
  return web.json(200, {success = true})
end

local function webhook_state()
  return {
    drop = db.setting_int("webhook_drop", 0),
    drop_all = db.setting("webhook_drop_all") == "1",
    duplicate = db.setting_int("webhook_duplicate", 0),
  }
end

local function set_webhooks(req)
  local body = web.body(req)
  local drop = web.number(body, "drop", {integer = true, min = 0, max = 1000000})
  local duplicate = web.number(body, "duplicate", {integer = true, min = 0, max = 1000000})
  local drop_all = body.drop_all
  if web.present(drop_all) and type(drop_all) ~= "boolean" then
    web.fail(400, "drop_all must be true or false", "validation_error", {field = "drop_all"})
  end
  store.transaction(function()
    if drop then db.set_setting("webhook_drop", drop) end
    if duplicate then db.set_setting("webhook_duplicate", duplicate) end
    if web.present(drop_all) then db.set_setting("webhook_drop_all", drop_all and "1" or "0") end
  end)
  return web.json(200, webhook_state())
end

local function get_webhooks()
  return web.json(200, webhook_state())
end

local function model_state()
  return {image_latency_ms = db.setting_int("image_latency_ms", 0),
          text_latency_ms = db.setting_int("text_latency_ms", 0)}
end

local function set_model(req)
  local body = web.body(req)
  local image = web.number(body, "image_latency_ms", {integer = true, min = 0, max = 600000})
  local text = web.number(body, "text_latency_ms", {integer = true, min = 0, max = 600000})
  if image then db.set_setting("image_latency_ms", image) end
  if text then db.set_setting("text_latency_ms", text) end
  return web.json(200, model_state())
end

local function get_model()
  return web.json(200, model_state())
end

local function calls(req)
  local order_id = web.query(req).order_id
  if order_id == "" then order_id = nil end
  return web.json(200, {calls = faults.calls(order_id)})
end

local function clear_calls()
  store.exec("DELETE FROM calls")
  return web.json(200, {success = true})
end

local function event_log(req)
  local order_id = web.query(req).order_id
  if order_id == "" then order_id = nil end
  return web.json(200, {events = events.inspect(order_id)})
end

-- POST /_sandbox/agents {"role": "buyer"|"seller", "name"}: another agent,
-- e.g. a stranger to an order.
local function add_agent(req)
  local body = web.body(req)
  local role = web.text(body, "role", {max = 10}) or "buyer"
  if role ~= "buyer" and role ~= "seller" then
    web.fail(400, "role must be buyer or seller", "validation_error", {field = "role"})
  end
  local name = web.text(body, "name", {max = 100}) or ("Sandbox " .. role)
  local id, key = crypto.uuid(), "am_sandbox_" .. crypto.random_hex(24)
  store.exec("INSERT INTO agents (id, role, name, description, api_key, balance, created_at) "
             .. "VALUES (?, ?, ?, ?, ?, ?, ?)", id, role .. "-extra", name, "", key, 1000000, time.iso())
  return web.json(201, {agent_id = id, api_key = key, name = name})
end

-- POST /_sandbox/orders/{id}/resolve {"outcome": "completed"|"cancelled", "note"}
local function resolve(req)
  local body = web.body(req)
  local outcome = web.text(body, "outcome", {required = true, max = 20})
  if outcome ~= "completed" and outcome ~= "cancelled" then
    web.fail(400, "outcome must be completed or cancelled", "validation_error", {field = "outcome"})
  end
  local note = web.text(body, "note", {max = 2000})
  if not orders.get(req.params.id) then web.fail(404, "Order not found", "not_found") end
  return web.json(200, {order = orders.view(orders.resolve_dispute(req.params.id, outcome, note))})
end

local function health()
  return web.json(200, {status = "ok", time = time.iso()})
end

control.routes = {
  {"POST", "/_sandbox/faults", add_fault},
  {"GET", "/_sandbox/faults", list_faults},
  {"DELETE", "/_sandbox/faults", clear_faults},
  {"POST", "/_sandbox/webhooks", set_webhooks},
  {"GET", "/_sandbox/webhooks", get_webhooks},
  {"POST", "/_sandbox/model", set_model},
  {"GET", "/_sandbox/model", get_model},
  {"GET", "/_sandbox/calls", calls},
  {"DELETE", "/_sandbox/calls", clear_calls},
  {"GET", "/_sandbox/events", event_log},
  {"POST", "/_sandbox/agents", add_agent},
  {"POST", "/_sandbox/orders/{id}/resolve", resolve},
  {"GET", "/_sandbox/health", health},
}

return control
