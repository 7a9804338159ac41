-- market.lua - the Agent Market client (CONTRACT.md section 1).
--
-- Every call authenticates with the api_key of CREDENTIALS_FILE. A call
-- returns the decoded answer (and the raw response), or nil and a failure
--   {status = n|nil, message = s, retry = bool, retry_after_ms = n|nil}
-- Retry rules (CONTRACT.md): 429 (honouring Retry-After), 5xx and network
-- errors are retried a few times in place, then handed back with
-- retry = true so the calling job runs again later; other 4xx never are.
-- Calls that create something (a message, an attachment) are retried in
-- place only on 429: after a 5xx or a lost connection the platform may have
-- done it, and the job checks the platform before trying again.
local http, json, fs, log, time = require "http", require "json", require "fs", require "log", require "time"
local settings = require "settings"

local M = {}

-- ---- credentials --------------------------------------------------------

local cached = {path = nil, mtime = nil, credentials = nil}

-- The seller's credentials {api_key, agent_id}, or nil and a reason.
function M.credentials()
  local path = settings.CREDENTIALS_FILE
  local st = fs.stat(path)
  if not st then return nil, "credentials file " .. path .. " not found" end
  if cached.path == path and cached.mtime == st.mtime and cached.credentials then
    return cached.credentials
  end
  local text, err = fs.read(path)
  if not text then return nil, "cannot read " .. path .. ": " .. tostring(err) end
  local c = json.decode(text)
  if type(c) ~= "table" or type(c.api_key) ~= "string" or c.api_key == "" then
    return nil, path .. " is not a credentials file ({\"api_key\": \"...\", \"agent_id\": \"...\"})"
  end
  log.secret(c.api_key)
  cached.path, cached.mtime = path, st.mtime
  cached.credentials = {api_key = c.api_key, agent_id = type(c.agent_id) == "string" and c.agent_id or nil}
  return cached.credentials
end

-- Our own agent id (from the credentials file), or nil.
function M.agent_id()
  local c = M.credentials()
  return c and c.agent_id
end

-- ---- requests -----------------------------------------------------------

local function retry_after_ms(headers)
  local v = headers and tonumber(headers["retry-after"])
  if v and v >= 0 then return math.floor(v * 1000) end
end

-- The platform's error text in an answer body.
local function error_text(body)
  if type(body) ~= "table" then return nil end
  local e = body.error
  if type(e) == "table" then e = e.message or e.code end
  return (e ~= nil and tostring(e)) or (body.detail ~= nil and tostring(body.detail)) or
    (body.message ~= nil and tostring(body.message)) or nil
end

-- A failure from a response (or a network error). Pure: used by the tests.
function M.failure(res, err)
  if not res then
    return {retry = true, message = "network error: " .. tostring(err)}
  end
  local body = json.decode(res.body or "")
  local text = error_text(body)
  local status = res.status
  return {
    status = status,
    retry = status == 429 or status >= 500,
    retry_after_ms = retry_after_ms(res.headers),
    message = string.format("HTTP %d%s", status, text and (": " .. text) or ""),
    body = body,
  }
end

local function backoff(base, attempt)
  return math.floor(base * 2 ^ (attempt - 1) * (0.5 + math.random()))
end

local function query_string(query)
  if not query then return "" end
  local keys = {}
  for k in pairs(query) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = tostring(query[k]):gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", c:byte()) end)
    parts[#parts + 1] = k .. "=" .. v
  end
  return #parts > 0 and ("?" .. table.concat(parts, "&")) or ""
end

-- One marketplace call. opts: json, multipart, query, creates (bool: see
-- the header), timeout. Returns decoded body (or {}), response; or nil, failure.
function M.request(method, path, opts)
  opts = opts or {}
  local creds, why = M.credentials()
  if not creds then return nil, {retry = false, message = why} end
  local url = settings.AGENT_MARKET_BASE_URL:gsub("/+$", "") .. path .. query_string(opts.query)
  local attempts = math.max(1, settings.MARKET_ATTEMPTS)
  local failure
  for attempt = 1, attempts do
    local res, err = http.request{
      method = method,
      url = url,
      headers = {Authorization = "Bearer " .. creds.api_key, Accept = "application/json"},
      json = opts.json,
      multipart = opts.multipart,
      timeout = opts.timeout or settings.MARKET_TIMEOUT_MS,
    }
    if res and res.status >= 200 and res.status < 300 then
      local body = json.decode(res.body or "")
      if body == nil then body = {} end
      return body, res
    end
    failure = M.failure(res, err)
    log.warn("marketplace call failed", {method = method, path = path, attempt = attempt, error = failure.message})
    if not failure.retry or attempt == attempts then break end
    if opts.creates and failure.status ~= 429 then break end
    local wait = failure.retry_after_ms or backoff(settings.MARKET_RETRY_BASE_MS, attempt)
    if wait > settings.MARKET_RETRY_MAX_WAIT_MS then break end
    time.sleep(wait)
  end
  return nil, failure
end

local function order_path(order_id, rest)
  return "/orders/" .. order_id:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", c:byte()) end) .. (rest or "")
end

-- ---- the calls ------------------------------------------------------------

function M.me() return M.request("GET", "/agents/me") end
function M.update_me(fields) return M.request("PATCH", "/agents/me", {json = fields}) end
function M.heartbeat() return M.request("POST", "/agents/heartbeat", {json = {}}) end

function M.create_listing(listing) return M.request("POST", "/listings", {json = listing, creates = true}) end
function M.listings(query) return M.request("GET", "/listings", {query = query}) end
function M.my_listings() return M.request("GET", "/listings/my") end

-- The order object (unwrapped), or nil, failure.
function M.order(order_id)
  local body, res = M.request("GET", order_path(order_id))
  if not body then return nil, res end
  if type(body.order) ~= "table" then return nil, {retry = true, message = "no order in the answer"} end
  return body.order
end

function M.orders(query)
  local body, res = M.request("GET", "/orders", {query = query})
  if not body then return nil, res end
  return type(body.orders) == "table" and body.orders or {}
end

-- Accepts an order. Returns the order's status after the call ("in_progress"
-- on success; on a 409 the order is read again and its real status is
-- returned), or nil, failure.
function M.accept(order_id)
  local body, res = M.request("POST", order_path(order_id, "/accept"), {json = {}})
  if body then return body.status or "in_progress" end
  if res.status == 409 then
    local order, failure = M.order(order_id)
    if not order then return nil, failure end
    return order.status, nil, order
  end
  return nil, res
end

-- Marks an order delivered. Returns its status after the call
-- ("pending_confirmation"; on a 409 the real status), or nil, failure.
function M.complete(order_id, delivery_note)
  local body, res = M.request("POST", order_path(order_id, "/complete"), {json = {delivery_note = delivery_note}})
  if body then return body.status or "pending_confirmation" end
  if res.status == 409 then
    local order, failure = M.order(order_id)
    if not order then return nil, failure end
    return order.status, nil, order
  end
  return nil, res
end

function M.messages(order_id)
  local body, res = M.request("GET", order_path(order_id, "/messages"))
  if not body then return nil, res end
  return type(body.messages) == "table" and body.messages or {}
end

-- Posts a message; returns the created message (may be {}), or nil, failure.
function M.send_message(order_id, content)
  local body, res = M.request("POST", order_path(order_id, "/messages"), {json = {content = content}, creates = true})
  if not body then return nil, res end
  return type(body.message) == "table" and body.message or body
end

function M.attachments(order_id)
  local body, res = M.request("GET", order_path(order_id, "/attachments"))
  if not body then return nil, res end
  return type(body.files) == "table" and body.files or {}
end

-- Uploads a file as an attachment; returns the file record, or nil, failure.
function M.upload(order_id, file)
  return M.request("POST", order_path(order_id, "/attachments"), {
    creates = true,
    timeout = math.max(settings.MARKET_TIMEOUT_MS, 120000),
    multipart = {
      {name = "file", file = file.path, filename = file.filename, content_type = file.content_type},
      {name = "description", value = file.description},
    },
  })
end

-- Unacknowledged events after last_event_id (a list of envelopes).
function M.events(last_event_id, limit)
  local body, res = M.request("GET", "/events/me/events", {query = {last_event_id = last_event_id or 0, limit = limit or 50}})
  if not body then return nil, res end
  if type(body) ~= "table" then return {} end
  if type(body.events) == "table" then return body.events end
  return body
end

function M.ack(event_ids)
  return M.request("POST", "/events/me/events/ack", {json = {event_ids = json.array(event_ids)}})
end

return M
