-- sandbox/buyer.lua - a client of a running sandbox for people and scripts:
-- the buyer's actions (order, message, confirm, cancel, dispute, status)
-- without writing HTTP by hand. It finds the sandbox through the
-- sandbox.json file in the sandbox's data directory.
--
--   local buyer = require "sandbox.buyer"
--   local b = buyer.connect("./data/sandbox")          -- or {as = "seller"}
--   local order = b:buy{listing_id = id, say = "a blue tech cover"}
--   b:wait_status(order.id, "pending_confirmation", 30000)
local http = require "http"
local json = require "json"
local time = require "time"

local buyer = {}
local Client = {}
Client.__index = Client

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The sandbox's description (sandbox.json) in data_dir, or nil, err.
function buyer.info(data_dir)
  local path = (data_dir or "./data/sandbox") .. "/sandbox.json"
  local raw = read_file(path)
  if not raw then return nil, "no sandbox.json in " .. (data_dir or "./data/sandbox") .. ": is the sandbox running?" end
  local info = json.decode(raw)
  if type(info) ~= "table" or not info.market_url then return nil, path .. " is not a sandbox description" end
  return info
end

-- The settings that point `skudemo serve` (and the seller commands) at the
-- sandbox described by info: its marketplace as the seller, its model.
function buyer.serve_settings(info)
  return {
    AGENT_MARKET_BASE_URL = info.market_url,
    CREDENTIALS_FILE = info.seller.credentials_file,
    OPENROUTER_API_KEY = info.model_api_key,
    OPENROUTER_BASE_URL = info.model_url,
  }
end

-- A client acting as the sandbox's buyer (or opts.as = "seller", or with
-- opts.api_key) for the sandbox whose data directory is data_dir. Waits up
-- to opts.timeout_ms (default 10 s) for the sandbox to answer.
function buyer.connect(data_dir, opts)
  opts = opts or {}
  local deadline = time.mono() + (opts.timeout_ms or 10000)
  local info, err
  repeat
    info, err = buyer.info(data_dir)
    if info then
      local res = http.request{method = "GET", url = info.base_url .. "/_sandbox/health", timeout = 1000}
      if res and res.status == 200 then break end
      info, err = nil, "the sandbox at " .. info.base_url .. " does not answer"
    end
    time.sleep(50)
  until time.mono() > deadline
  if not info then error(err, 2) end
  local who = info[opts.as or "buyer"] or info.buyer
  return setmetatable({info = info, api_key = opts.api_key or who.api_key, agent_id = who.agent_id}, Client)
end

-- One marketplace call: path relative to /api ("/orders/ID"). Returns the
-- status, the decoded JSON body (or the raw body) and the response; nil
-- and an error when nothing answered.
function Client:request(method, path, body, headers)
  local h = {Authorization = "Bearer " .. self.api_key}
  for k, v in pairs(headers or {}) do h[k] = v end
  local req = {method = method, url = self.info.market_url .. path, headers = h, timeout = 30000}
  if type(body) == "table" and body.multipart then req.multipart = body.multipart
  elseif body ~= nil then req.json = body end
  local res, err = http.request(req)
  if not res then return nil, err end
  local decoded = json.decode(res.body or "")
  if decoded == nil then decoded = res.body end
  return res.status, decoded, res
end

-- A call that must answer `want` (a status); raises with the sandbox's
-- error message otherwise. Returns the decoded body.
function Client:expect(want, method, path, body)
  local status, decoded = self:request(method, path, body)
  if status ~= want then
    local message = type(decoded) == "table" and (decoded.error or decoded.detail) or decoded
    if type(message) == "table" then message = message.message or json.encode(message) end
    error(string.format("%s %s: %s %s", method, path, tostring(status), tostring(message)), 2)
  end
  return decoded
end

-- A call to the sandbox's control API (/_sandbox/...). Returns the status
-- and the decoded body.
function Client:control(method, path, body)
  local res, err = http.request{method = method, url = self.info.base_url .. "/_sandbox" .. path,
                                json = body, timeout = 30000}
  if not res then return nil, err end
  return res.status, json.decode(res.body or "") or res.body
end

function Client:place_order(listing_id, requirement)
  return self:expect(201, "POST", "/orders", {listing_id = listing_id, requirement = requirement}).order
end

function Client:order(id)
  return self:expect(200, "GET", "/orders/" .. id).order
end

function Client:message(id, content)
  return self:expect(201, "POST", "/orders/" .. id .. "/messages", {content = content}).message
end

function Client:messages(id)
  return self:expect(200, "GET", "/orders/" .. id .. "/messages").messages
end

function Client:attachments(id)
  return self:expect(200, "GET", "/orders/" .. id .. "/attachments")
end

function Client:confirm(id)
  return self:expect(200, "POST", "/orders/" .. id .. "/confirm", {})
end

function Client:cancel(id, reason)
  return self:expect(200, "POST", "/orders/" .. id .. "/cancel", {reason = reason or "Cancelled by the buyer"})
end

function Client:dispute(id, reason)
  return self:expect(200, "POST", "/orders/" .. id .. "/dispute", {reason = reason})
end

-- The order, its messages and its attachments.
function Client:status(id)
  return {order = self:order(id), messages = self:messages(id), attachments = self:attachments(id)}
end

-- Polls the order until its status is one of `statuses` (a string or a
-- list); returns the order. Raises after timeout_ms (default 30 s), or as
-- soon as the order reaches a final status it was not waiting for.
function Client:wait_status(id, statuses, timeout_ms)
  local wanted = {}
  for _, s in ipairs(type(statuses) == "table" and statuses or {statuses}) do wanted[s] = true end
  local deadline = time.mono() + (timeout_ms or 30000)
  local order
  repeat
    order = self:order(id)
    if wanted[order.status] then return order end
    if order.status == "cancelled" or order.status == "completed" then break end
    time.sleep(50)
  until time.mono() > deadline
  error(string.format("order %s is %s, not %s", id, order.status,
                      type(statuses) == "table" and table.concat(statuses, " or ") or statuses), 2)
end

-- The newest active listing (any seller's), or nil.
function Client:newest_listing()
  local listings = self:expect(200, "GET", "/listings?status=active&limit=1")
  return listings.items[1]
end

-- Places an order, waits until the seller accepts it, then sends the
-- requirement as a message. opts: listing_id, say, requirement (sent with
-- the order), timeout_ms (for the accept), on_step(text) for progress.
-- Returns the order (in_progress) and the message.
function Client:buy(opts)
  local step = opts.on_step or function() end
  local listing_id = opts.listing_id
  if not listing_id then
    local listing = self:newest_listing()
    if not listing then error("no active listing to order", 2) end
    listing_id = listing.id
  end
  local order = self:place_order(listing_id, opts.requirement)
  step("placed order " .. order.id .. " on listing " .. listing_id .. " (" .. order.status .. ")")
  order = self:wait_status(order.id, {"in_progress", "pending_confirmation"}, opts.timeout_ms or 60000)
  step("order " .. order.id .. " is " .. order.status)
  local message
  if opts.say then
    message = self:message(order.id, opts.say)
    step("sent the requirement: " .. opts.say)
  end
  return order, message
end

return buyer
