-- sandbox/app.lua - the sandbox's routes and jobs, as server.start and
-- pool.start load them ({module = "sandbox.app"}).
--
-- Every route goes through one wrapper that applies injected faults, turns
-- a handler's web.fail into the service's error shape, never lets a Lua
-- error escape as anything but a logged 500, records the call for
-- GET /_sandbox/calls and logs a line at debug level.
local log = require "log"
local time = require "time"
local web = require "sandbox.web"
local agents = require "sandbox.agents"
local attachments = require "sandbox.attachments"
local control = require "sandbox.control"
local events = require "sandbox.events"
local faults = require "sandbox.faults"
local listings = require "sandbox.listings"
local model = require "sandbox.model"
local orders = require "sandbox.orders"

local app = {routes = {}, jobs = {}}

local MODEL_ROUTE = "/api/v1/chat/completions"

local error_types = {
  [400] = "bad_request", [401] = "unauthorized", [402] = "payment_required", [403] = "forbidden",
  [404] = "not_found", [408] = "timeout", [409] = "conflict", [413] = "payload_too_large",
  [422] = "validation_error", [429] = "rate_limited", [500] = "internal_error", [502] = "bad_gateway",
  [503] = "service_unavailable", [504] = "gateway_timeout",
}

-- The answer an injected fault gives, in the shape of the route's service.
local function fault_answer(fault, is_model)
  local headers = {}
  if fault.retry_after then headers["Retry-After"] = tostring(fault.retry_after) end
  if fault.body ~= nil then return web.json(fault.status, fault.body, headers) end
  local message = string.format("Injected fault: HTTP %d", fault.status)
  if is_model then return model.error_answer(fault.status, message, headers) end
  return web.json(fault.status, web.error_body(message, {error_type = error_types[fault.status] or "error"}),
                  headers)
end

-- A handler's failure (web.fail / web.answer) or Lua error as an answer.
local function failure_answer(err, is_model, req)
  if web.is_failure(err) then
    if err.custom then
      local body = err.body
      if type(body) == "table" then return web.json(err.status, body, err.headers) end
      return err.status, err.headers or {}, body
    end
    if is_model then return model.error_answer(err.status, err.message) end
    return web.json(err.status, web.error_body(err.message, err.details))
  end
  log.error("sandbox handler failed", {method = req.method, path = req.path, error = tostring(err)})
  if is_model then return model.error_answer(500, "Internal error") end
  return web.json(500, web.error_body("Internal error", {error_type = "internal_error"}))
end

local function traceback(err)
  if web.is_failure(err) then return err end
  return debug.traceback(tostring(err), 2)
end

local function wrap(method, pattern, handler)
  local is_api = pattern:sub(1, 5) == "/api/"
  local is_model = pattern == MODEL_ROUTE
  return function(req)
    local started = time.mono()
    req.params = req.params or {}
    local kind = is_model and model.kind_of(model.decode(req)) or nil
    local fault
    if is_api then
      local ok, found = pcall(faults.take, method, pattern, req.path, kind)
      if ok then fault = found else log.warn("sandbox could not read faults", {error = tostring(found)}) end
    end
    local status, headers, body
    if fault and fault.delay_ms > 0 then time.sleep(fault.delay_ms) end
    if fault and fault.status and not fault.mode then
      status, headers, body = fault_answer(fault, is_model)
    else
      local ok, s, h, b = xpcall(handler, traceback, req, fault)
      if ok then status, headers, body = s, h, b
      else status, headers, body = failure_answer(s, is_model, req) end
    end
    if is_api then
      local order_id = req.order_id or (pattern:find("/api/orders/{id}", 1, true) == 1 and req.params.id) or nil
      local ok, err = pcall(faults.record_call, {method = method, route = pattern, path = req.path,
                                                 status = status, order_id = order_id, kind = kind,
                                                 agent_id = req.agent_id})
      if not ok then log.warn("sandbox could not record a call", {error = tostring(err)}) end
    end
    log.debug("sandbox request", {method = method, path = req.path, route = pattern, status = status,
                                  took_ms = time.mono() - started, fault = fault and fault.id or nil})
    return status, headers, body
  end
end

local function add(route_list)
  for _, r in ipairs(route_list) do
    local method, pattern = r[1], r[2]
    local handler = wrap(method, pattern, r[3])
    app.routes[#app.routes + 1] = {method, pattern, handler}
  end
end

add(agents.routes)
add(listings.routes)
add(orders.routes)
add(attachments.routes)
add(events.routes)
add({{"POST", MODEL_ROUTE, model.complete}})
add(control.routes)

for name, job in pairs(events.jobs) do app.jobs[name] = job end
for name, job in pairs(orders.jobs) do app.jobs[name] = job end

return app
