-- world.lua - a sandbox and a `skudemo serve` against it, as real processes
-- on 127.0.0.1, for the end-to-end tests.
--
--   local world = require "world"
--   local w = world.start{name = "flow"}          -- sandbox, listing, webhook, server
--   local order = w:order_and_say("a blue cover") -- the buyer orders and asks
--   w:wait_status(order.id, "pending_confirmation")
--   w:stop()
--
-- The server's settings are written to w.dir/serve.env (short intervals,
-- a webhook secret, the sandbox's URLs and keys); opts.env adds or
-- overrides settings. opts.lua_dir serves another copy of lua/.
package.path = "tests/lib/?.lua;scripts/?.lua;" .. package.path
local proc = require "proc"
local http, json, time, crypto, store = require "http", require "json", require "time", require "crypto", require "store"
local buyer_lib = require "sandbox.buyer"
local harness = require "harness"

local W = {}
W.__index = W

local function read_json(path)
  local text = proc.slurp(path)
  return text and json.decode(text)
end

-- Writes a .env file from a table (sorted, one KEY=value a line).
local function write_env(path, env)
  local keys = {}
  for k in pairs(env) do keys[#keys + 1] = k end
  table.sort(keys)
  local f = assert(io.open(path, "w"))
  for _, k in ipairs(keys) do f:write(k, "=", tostring(env[k]), "\n") end
  f:close()
end

-- Starts the sandbox in dir/sandbox; returns the process and its description.
-- Each sandbox connection has its own thread, so slow model calls overlap
-- (the bench places 200 orders at once).
function W.start_sandbox(dir, args)
  local data = dir .. "/sandbox"
  os.execute("mkdir -p " .. proc.quote(data))
  local argv = {"sandbox", "--port", "0", "--data", data, "--webhook-retry-ms", "200,500,1000,2000,4000",
                "--webhook-timeout-ms", "3000"}
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local p = proc.skudemo(argv, {log = dir .. "/sandbox.log"})
  local info = harness.eventually(function()
    if not p:alive() then error("the sandbox exited:\n" .. p:output()) end
    return read_json(data .. "/sandbox.json")
  end, 15000, "sandbox.json")
  return p, info, data
end

-- Everything a test world needs: sandbox, our listing, the webhook, serve.
function W.start(opts)
  opts = opts or {}
  local self = setmetatable({}, W)
  self.dir = harness.tmpdir("fulfillment-" .. (opts.name or "world"))
  self.sandbox_proc, self.info, self.sandbox_dir = W.start_sandbox(self.dir, opts.sandbox_args)
  self.buyer = buyer_lib.connect(self.sandbox_dir)
  self.seller = buyer_lib.connect(self.sandbox_dir, {as = "seller"})
  self.sku = self:create_listing("AI image for tests " .. (opts.name or ""))
  self.port = proc.free_port()
  self.url = "http://127.0.0.1:" .. self.port
  self.data = self.dir .. "/data"
  self.admin_secret = crypto.random_hex(16)
  self.webhook_secret = opts.unsigned and "" or crypto.random_hex(20)
  self.env = buyer_lib.serve_settings(self.info)
  for name, value in pairs{
    SERVICE_SKU_ID = self.sku,
    ADMIN_SECRET = self.admin_secret,
    WEBHOOK_PATH = "/api/v1/webhook/orders",
    WEBHOOK_PUBLIC_BASE_URL = self.url,
    WEBHOOK_SECRET = self.webhook_secret,
    APP_HOST = "127.0.0.1",
    APP_PORT = self.port,
    DATA_DIR = self.data,
    LOG_LEVEL = "info",
    POOL_WORKERS = 8,
    EVENTS_POLL_INTERVAL_MS = 400,
    HEARTBEAT_INTERVAL_MS = 60000,
    JOB_RETRY_BASE_MS = 50,
    MODEL_RETRY_BASE_MS = 50,
    MARKET_RETRY_BASE_MS = 20,
    MARKET_ATTEMPTS = 1,
    ACCEPT_WAIT_MS = 100,
    SHUTDOWN_TIMEOUT_MS = 3000,
  } do self.env[name] = value end
  for k, v in pairs(opts.env or {}) do self.env[k] = v end
  self.env_file = self.dir .. "/serve.env"
  write_env(self.env_file, self.env)
  self.lua_dir = opts.lua_dir
  local status = self.seller:expect(200, "PATCH", "/agents/me", {
    webhook_url = self.url .. "/api/v1/webhook/orders",
    webhook_secret = self.webhook_secret ~= "" and self.webhook_secret or nil,
  })
  assert(status)
  if opts.serve ~= false then self:start_server() end
  return self
end

-- Creates a listing of our seller; returns its id.
function W:create_listing(name)
  local body = self.seller:expect(201, "POST", "/listings", {
    name = name, description = "An AI image, delivered as an attachment.", price = 20, inventory = 1000,
    category = "tech", tags = json.array{"image"}})
  return body.listing.id
end

-- Starts `skudemo serve` with the world's settings and waits until it answers.
function W:start_server()
  local args = {"--env", self.env_file}
  if self.lua_dir then args[#args + 1] = "--lua" args[#args + 1] = self.lua_dir end
  args[#args + 1] = "serve"
  self.server = proc.skudemo(args, {log = self.dir .. "/serve.log", env = {SKUDEMO_ENV_FILE = self.env_file}})
  harness.eventually(function()
    if not self.server:alive() then error("skudemo serve exited:\n" .. self.server:output()) end
    return http.request{method = "GET", url = self.url .. "/healthz", timeout = 500}
  end, 15000, "skudemo serve to answer")
  return self.server
end

-- Stops the server (TERM, or KILL with hard = true) and waits for it.
function W:stop_server(hard)
  if not self.server then return end
  if hard then
    self.server:kill("KILL")
    self.server:wait(5000)
  else
    self.server:stop(10000)
  end
  self.server = nil
end

function W:stop()
  self:stop_server()
  if self.sandbox_proc then self.sandbox_proc:stop(5000) end
end

-- Runs `skudemo ARGS...` with the world's settings; returns exit code and output.
function W:run(args, env)
  local parts = {}
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. proc.quote(v) end
  local words = {proc.quote(proc.bin()), "--env", proc.quote(self.env_file)}
  for _, a in ipairs(args) do words[#words + 1] = proc.quote(a) end
  local cmd = (#parts > 0 and ("env " .. table.concat(parts, " ") .. " ") or "") .. table.concat(words, " ") ..
    " </dev/null 2>&1"
  local f = assert(io.popen(cmd))
  local out = f:read("a")
  local _, _, code = f:close()
  return code, out
end

-- ---- the buyer --------------------------------------------------------------

-- The buyer orders our listing (or listing_id) and, once we accepted,
-- sends `say`. Returns the order.
function W:order_and_say(say, listing_id, timeout_ms)
  local order = self.buyer:buy{listing_id = listing_id or self.sku, say = say, timeout_ms = timeout_ms or 15000}
  return order
end

function W:order(id)
  return self.buyer:order(id)
end

-- Waits for the order's status; then a moment more, as the sandbox logs a
-- call just after answering it.
function W:wait_status(id, status, timeout_ms)
  local order = self.buyer:wait_status(id, status, timeout_ms or 20000)
  time.sleep(150)
  return order
end

-- The seller's messages on an order (what the buyer read from us).
function W:our_messages(id)
  local out = {}
  for _, m in ipairs(self.buyer:messages(id)) do
    if m.sender_id == self.info.seller.agent_id then out[#out + 1] = m.content end
  end
  return out
end

-- ---- the sandbox's control API ----------------------------------------------

function W:control(method, path, body)
  local status, decoded = self.buyer:control(method, path, body)
  assert(status and status < 300, string.format("%s /_sandbox%s: %s %s", method, path, tostring(status),
                                                json.encode(decoded)))
  return decoded
end

function W:fault(f) return self:control("POST", "/faults", f) end
function W:clear_faults() return self:control("DELETE", "/faults") end
function W:webhooks(settings) return self:control("POST", "/webhooks", settings) end
function W:model(settings) return self:control("POST", "/model", settings) end

-- Calls the sandbox answered, filtered: {order_id, method, route, kind, status, since}.
function W:calls(filter)
  filter = filter or {}
  local path = "/calls" .. (filter.order_id and ("?order_id=" .. filter.order_id) or "")
  local out = {}
  for _, c in ipairs(self:control("GET", path).calls) do
    local keep = (not filter.method or c.method == filter.method) and (not filter.route or c.route == filter.route)
      and (not filter.kind or c.kind == filter.kind)
      and (not filter.ok or (c.status >= 200 and c.status < 300))
      and (not filter.since or c.at >= filter.since)
    if keep then out[#out + 1] = c end
  end
  return out
end

function W:count(filter) return #self:calls(filter) end

-- The model calls since a mark (model calls carry no order id).
function W:model_calls(kind, since)
  return self:count{route = "/api/v1/chat/completions", kind = kind, since = since}
end

-- A mark for `since`: the sandbox's clock as ISO text, slightly behind.
function W:mark()
  time.sleep(5)
  return time.iso(time.now() - 1)
end

-- ---- the server ---------------------------------------------------------------

-- POSTs a webhook body to the server: sign = true (default, with the
-- world's secret), false (unsigned) or a string (that signature).
function W:post_webhook(body, sign, headers)
  local raw = type(body) == "table" and json.encode(body) or body
  local h = {["Content-Type"] = "application/json"}
  if sign == nil or sign == true then
    if self.webhook_secret ~= "" then h["X-Webhook-Signature"] = crypto.hmac_sha256(self.webhook_secret, raw) end
  elseif type(sign) == "string" then
    h["X-Webhook-Signature"] = sign
  end
  for k, v in pairs(headers or {}) do h[k] = v end
  local res, err = http.request{method = "POST", url = self.url .. "/api/v1/webhook/orders", headers = h,
                                body = raw, timeout = 10000}
  assert(res, err)
  return res, json.decode(res.body or "")
end

function W:admin(method, path, body, secret)
  local res, err = http.request{method = method, url = self.url .. path, timeout = 10000,
                                headers = {["X-Admin-Secret"] = secret or self.admin_secret}, json = body}
  assert(res, err)
  return res, json.decode(res.body or "")
end

function W:alive()
  local res = http.request{method = "GET", url = self.url .. "/healthz", timeout = 2000}
  return res ~= nil and self.server and self.server:alive()
end

-- A query on the server's store (opened by this test process too).
function W:query(sql, ...)
  if not self.store_open then
    assert(store.open(self.data .. "/skudemo.db"))
    self.store_open = true
  end
  return store.query(sql, ...)
end

function W:row(sql, ...)
  return self:query(sql, ...)[1]
end

function W:local_order(id)
  return self:row("SELECT * FROM orders WHERE order_id = ?", id)
end

function W:timeline(id)
  local kinds = {}
  for _, r in ipairs(self:query("SELECT kind FROM order_timeline WHERE order_id = ? ORDER BY id", id)) do
    kinds[#kinds + 1] = r.kind
  end
  return kinds
end

function W:has_note(id, kind)
  for _, k in ipairs(self:timeline(id)) do if k == kind then return true end end
  return false
end

-- The lines of DATA_DIR/image_tasks.jsonl, decoded.
function W:task_log()
  local out = {}
  for line in (proc.slurp(self.data .. "/image_tasks.jsonl") or ""):gmatch("[^\n]+") do
    out[#out + 1] = json.decode(line)
  end
  return out
end

function W:task_lines(order_id)
  local out = {}
  for _, t in ipairs(self:task_log()) do if t.order_id == order_id then out[#out + 1] = t end end
  return out
end

-- Where things went wrong, for a failing test's message.
function W:logs()
  return "---- serve.log\n" .. (proc.slurp(self.dir .. "/serve.log") or "") ..
    "\n---- sandbox.log (tail)\n" .. (proc.slurp(self.dir .. "/sandbox.log") or ""):sub(-3000)
end

return W
