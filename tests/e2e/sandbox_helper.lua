-- sandbox_helper.lua - starts a real `skudemo sandbox --port 0` for the
-- sandbox's end-to-end tests and talks to it over 127.0.0.1.
--
--   local S = require "sandbox_helper"
--   local sb = S.start{args = {"--accept-deadline-ms", "500"}}
--   local status, body = sb.buyer:request("GET", "/agents/me")
--   sb:stop()
package.path = "tests/lib/?.lua;scripts/?.lua;" .. package.path

local http = require "http"
local json = require "json"
local time = require "time"
local proc = require "proc"
local t = require "harness"
local buyer = require "sandbox.buyer"

local S = {}
local Sandbox = {}
Sandbox.__index = Sandbox

-- Starts a sandbox on a fresh (or the given) data directory and waits
-- until it answers. opts.args: extra options; opts.dir: the data dir.
function S.start(opts)
  opts = opts or {}
  local dir = opts.dir or t.tmpdir("sandbox")
  local argv = {"sandbox", "--port", "0", "--data", dir, "--threads", "16", "--workers", "4"}
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  local p = proc.skudemo(argv, {log = dir .. "/sandbox.log", env = {LOG_LEVEL = opts.log_level or "info"}})
  local ok, client = pcall(buyer.connect, dir, {timeout_ms = 10000})
  if not ok then
    p:stop()
    error("the sandbox did not start: " .. tostring(client) .. "\n" .. p:output(), 2)
  end
  local sb = setmetatable({proc = p, dir = dir, info = client.info, buyer = client}, Sandbox)
  sb.seller = buyer.connect(dir, {as = "seller"})
  return sb
end

function Sandbox:stop()
  self.proc:stop(5000)
end

-- A client for another agent (a stranger to every order) of this sandbox.
function Sandbox:stranger()
  local status, body = self.buyer:control("POST", "/agents", {role = "buyer", name = "Stranger"})
  t.eq(status, 201, "create a stranger agent")
  return buyer.connect(self.dir, {api_key = body.api_key})
end

-- A raw HTTP call to the sandbox: path from the root ("/api/...").
function Sandbox:raw(method, path, opts)
  opts = opts or {}
  local res, err = http.request{method = method, url = self.info.base_url .. path, headers = opts.headers,
                                body = opts.body, json = opts.json, multipart = opts.multipart,
                                timeout = opts.timeout or 15000}
  assert(res, err)
  return res.status, json.decode(res.body or ""), res
end

function Sandbox:control(method, path, body)
  return self.buyer:control(method, path, body)
end

-- A listing of the sandbox's seller (created for the test).
function Sandbox:listing(fields)
  local body = {name = "AI image", description = "Tell us the picture you want.", price = 20}
  for k, v in pairs(fields or {}) do body[k] = v end
  return self.seller:expect(201, "POST", "/listings", body).listing
end

-- An order of the buyer on a new listing, optionally moved on by the
-- seller: to = "in_progress" or "pending_confirmation".
function Sandbox:order(to)
  local listing = self:listing()
  local order = self.buyer:place_order(listing.id, {})
  if to == "in_progress" or to == "pending_confirmation" then
    self.seller:expect(200, "POST", "/orders/" .. order.id .. "/accept", {})
  end
  if to == "pending_confirmation" then
    self.seller:expect(200, "POST", "/orders/" .. order.id .. "/complete", {delivery_note = "done"})
  end
  return self.buyer:order(order.id), listing
end

-- The sandbox's events (GET /_sandbox/events), optionally of one order.
function Sandbox:events(order_id)
  local _, body = self:control("GET", "/events" .. (order_id and ("?order_id=" .. order_id) or ""))
  return body.events
end

-- Waits until pred(events) holds for this order's events; returns them.
function Sandbox:wait_events(order_id, pred, what, timeout_ms)
  return t.eventually(function()
    local evs = self:events(order_id)
    return pred(evs) and evs
  end, timeout_ms or 5000, what)
end

-- Asserts the marketplace error shape and returns its details.
function S.is_error(status, body, want_status, want_type)
  t.eq(status, want_status, "status")
  t.ok(type(body) == "table", "a JSON error body")
  t.eq(body.success, false, "success flag")
  t.eq(type(body.error), "string", "error message")
  t.eq(type(body.details), "table", "details")
  if want_type then t.eq(body.details.error_type, want_type, "error_type") end
  return body.details
end

-- Counts the items of list for which pred holds.
function S.count(list, pred)
  local n = 0
  for _, v in ipairs(list) do if pred(v) then n = n + 1 end end
  return n
end

function S.sleep(ms) time.sleep(ms) end

return S
