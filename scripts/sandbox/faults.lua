-- sandbox/faults.lua - injected failures for tests, and the log of every
-- API call the sandbox answered.
--
-- A fault matches the next `remaining` calls to a route pattern as
-- CONTRACT.md writes it ("/api/orders/{id}/accept"), or to one concrete
-- path, optionally only for one method and, on the model route, one kind
-- of call ("image" or "text").
local json = require "json"
local store = require "store"
local time = require "time"
local web = require "sandbox.web"

local faults = {}

faults.modes = {error_object = true, no_images = true}

-- Reads and checks a fault from a control request body; returns the row.
function faults.parse(body)
  local route = web.text(body, "route", {required = true, max = 500})
  if route:sub(1, 1) ~= "/" then
    web.fail(400, "route must be a path pattern such as /api/orders/{id}/accept", "validation_error", {field = "route"})
  end
  -- CONTRACT.md writes marketplace routes relative to the base URL
  if not route:find("^/api/") and not route:find("^/_sandbox/") then route = "/api" .. route end
  local method = web.text(body, "method", {max = 10})
  local status = web.number(body, "status", {integer = true, min = 100, max = 599})
  local delay = web.number(body, "delay_ms", {integer = true, min = 0, max = 600000}) or 0
  local count = web.number(body, "count", {integer = true, min = 1, max = 1000000}) or 1
  local retry_after = web.number(body, "retry_after", {integer = true, min = 0, max = 86400})
  local kind = web.text(body, "kind", {max = 10})
  if kind and kind ~= "image" and kind ~= "text" then
    web.fail(400, "kind must be image or text", "validation_error", {field = "kind"})
  end
  local mode = web.text(body, "mode", {max = 20})
  if mode and not faults.modes[mode] then
    web.fail(400, "mode must be error_object or no_images", "validation_error", {field = "mode"})
  end
  if not status and delay == 0 and not mode then
    web.fail(400, "a fault needs a status, a delay_ms or a mode", "validation_error")
  end
  local answer
  if web.present(body.body) then answer = web.reencode(body.body, "body") end
  return {method = method and method:upper(), route = route, kind = kind, mode = mode, status = status,
          delay_ms = delay, retry_after = retry_after, body = answer, remaining = count}
end

function faults.add(f)
  local _, id = store.exec(
    "INSERT INTO faults (method, route, kind, mode, status, delay_ms, retry_after, body, remaining) "
    .. "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    f.method, f.route, f.kind, f.mode, f.status, f.delay_ms, f.retry_after, f.body, f.remaining)
  return id
end

function faults.clear()
  store.exec("DELETE FROM faults")
end

function faults.list()
  local out = json.array()
  for _, row in ipairs(store.query("SELECT * FROM faults WHERE remaining > 0 ORDER BY id")) do
    row.body = row.body and json.decode(row.body) or nil
    out[#out + 1] = row
  end
  return out
end

-- Takes (consumes one use of) the oldest fault matching this call, or nil.
function faults.take(method, pattern, path, kind)
  -- a read first: most calls meet no fault and need no write transaction
  if not store.row("SELECT id FROM faults WHERE remaining > 0 LIMIT 1") then return nil end
  return store.transaction(function()
    local row = store.row(
      "SELECT * FROM faults WHERE remaining > 0 AND (method IS NULL OR method = ?) "
      .. "AND (route = ? OR route = ?) AND (kind IS NULL OR kind = ?) ORDER BY id LIMIT 1",
      method, pattern, path, kind or "")
    if not row then return nil end
    store.exec("UPDATE faults SET remaining = remaining - 1 WHERE id = ?", row.id)
    if row.body then row.body = json.decode(row.body) end
    return row
  end)
end

-- Records one answered call.
function faults.record_call(call)
  store.exec("INSERT INTO calls (method, route, path, status, order_id, kind, agent_id, at) "
             .. "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
             call.method, call.route, call.path, call.status, call.order_id, call.kind, call.agent_id,
             time.iso())
end

-- The answered calls, oldest first (optionally those of one order).
function faults.calls(order_id)
  local rows
  if order_id then
    rows = store.query("SELECT * FROM calls WHERE order_id = ? ORDER BY id", order_id)
  else
    rows = store.query("SELECT * FROM calls ORDER BY id")
  end
  local out = json.array()
  for _, r in ipairs(rows) do
    out[#out + 1] = {method = r.method, route = r.route, path = r.path, status = r.status,
                     order_id = r.order_id or json.null, kind = r.kind or json.null,
                     agent_id = r.agent_id or json.null, at = r.at}
  end
  return out
end

return faults
