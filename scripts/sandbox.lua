-- scripts/sandbox.lua - `skudemo sandbox`: a local emulator of the
-- marketplace and of the model router (CONTRACT.md), and the buyer's
-- commands against a running one. See `skudemo sandbox --help`.

local config = require "config"
local fs = require "fs"
local json = require "json"

local usage = [[
usage: skudemo sandbox [OPTIONS]              run the sandbox
       skudemo sandbox COMMAND [ARGS] [--data DIR]   act as its buyer

The sandbox serves, on one port:
  the marketplace   http://HOST:PORT/api       (agents, listings, orders, messages,
                                                attachments, events, heartbeat)
  the model router  http://HOST:PORT/api/v1    (POST /chat/completions)
  its control API   http://HOST:PORT/_sandbox  (faults, webhooks, model, calls, events)
It creates a seller and a buyer, writes their credentials as DIR/seller.json and
DIR/buyer.json, and describes itself in DIR/sandbox.json.

options:
  --port N                  port (default 8900; 0 = any free port)
  --host ADDR               address to listen on (default 127.0.0.1)
  --data DIR                state directory (default ./data/sandbox)
  --accept-deadline-ms N    cancel orders not accepted in time (default 1800000)
  --confirm-deadline-ms N   confirm delivered orders after this long (default 259200000; 0 = never)
  --webhook-retry-ms LIST   delays between delivery attempts (default 1000,5000,30000,120000,600000)
  --webhook-timeout-ms N    a delivery not answered 2xx in time has failed (default 5000)
  --image-latency-ms N      the image model's delay (default 0)
  --text-latency-ms N       the text model's delay (default 0)
  --online-window-ms N      an agent is online this long after a heartbeat (default 180000)
  --max-file-bytes N        the attachment size cap (default 104857600)
  --threads N               HTTP server threads; 0 (the default): a thread per
                            connection, so slow model calls never queue
  --workers N               webhook delivery workers (default 8)
  --model-key KEY           the model router's API key (default: generated and kept)
  --help                    this text

control API (no auth, JSON):
  POST   /_sandbox/faults     {"route":"/api/orders/{id}/accept","method":"POST","count":2,
                               "status":503,"delay_ms":0,"retry_after":1,"body":{...},
                               "kind":"image"|"text","mode":"error_object"|"no_images"}
  GET    /_sandbox/faults     DELETE /_sandbox/faults
  POST   /_sandbox/webhooks   {"drop":N,"drop_all":true|false,"duplicate":N}
  POST   /_sandbox/model      {"image_latency_ms":N,"text_latency_ms":N}
  GET    /_sandbox/calls[?order_id=X]   DELETE /_sandbox/calls
  GET    /_sandbox/events[?order_id=X]  every event, its delivery attempts and ack state
  POST   /_sandbox/agents     {"role":"buyer"|"seller","name":...}: another agent and its key
  POST   /_sandbox/orders/{id}/resolve  {"outcome":"completed"|"cancelled","note":...}
  GET    /_sandbox/health

buyer commands:
  buy [--listing ID] --say TEXT [--requirement TEXT] [--timeout-ms N]
                            order, wait until the seller accepts, send TEXT
  message ORDER TEXT        send a message on the order
  confirm ORDER             confirm a delivered order
  cancel ORDER [--reason R] cancel an order not yet accepted
  dispute ORDER --reason R  dispute a delivered order (10 to 2000 characters)
  status ORDER [--json]     the order, its messages and its attachments
]]

local commands = {buy = true, message = true, confirm = true, cancel = true, dispute = true, status = true}

-- Options as {name = value} and the remaining words, from the arguments.
local flags = {help = true, json = true}
local function parse(args)
  local opts, words = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-([%w%-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w%-]+)$") end
    if name then
      name = name:gsub("%-", "_")
      if value == nil and not flags[name] then
        i = i + 1
        value = args[i]
        if value == nil then error("option --" .. a:sub(3) .. " needs a value", 0) end
      end
      opts[name] = value == nil and true or value
    else
      words[#words + 1] = a
    end
    i = i + 1
  end
  return opts, words
end

local function int_option(opts, name, default)
  local v = opts[name]
  if v == nil then return default end
  local n = math.tointeger(tonumber(v))
  if not n or n < 0 then error("--" .. name:gsub("_", "-") .. " must be a non-negative integer", 0) end
  return n
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local p = io.popen("pwd")
  local cwd = p:read("l")
  p:close()
  path = path:gsub("^%./", "")
  return cwd .. "/" .. path
end

local function run_sandbox(opts)
  local host = require "host"
  local log = require "log"
  local pool = require "pool"
  local server = require "server"
  local store = require "store"
  local crypto = require "crypto"

  local data = absolute(opts.data or config.get("SANDBOX_DATA_DIR", "./data/sandbox"))
  local settings = {
    SANDBOX_DATA_DIR = data,
    SANDBOX_ACCEPT_DEADLINE_MS = int_option(opts, "accept_deadline_ms",
                                            config.int("SANDBOX_ACCEPT_DEADLINE_MS", 30 * 60 * 1000)),
    SANDBOX_CONFIRM_DEADLINE_MS = int_option(opts, "confirm_deadline_ms",
                                             config.int("SANDBOX_CONFIRM_DEADLINE_MS", 72 * 3600 * 1000)),
    SANDBOX_WEBHOOK_TIMEOUT_MS = int_option(opts, "webhook_timeout_ms", config.int("SANDBOX_WEBHOOK_TIMEOUT_MS", 5000)),
    SANDBOX_ONLINE_WINDOW_MS = int_option(opts, "online_window_ms", config.int("SANDBOX_ONLINE_WINDOW_MS", 180000)),
    SANDBOX_MAX_FILE_BYTES = int_option(opts, "max_file_bytes",
                                        config.int("SANDBOX_MAX_FILE_BYTES", 100 * 1024 * 1024)),
    SANDBOX_WEBHOOK_RETRY_MS = opts.webhook_retry_ms or config.get("SANDBOX_WEBHOOK_RETRY_MS",
                                                                   "1000,5000,30000,120000,600000"),
  }
  if not settings.SANDBOX_WEBHOOK_RETRY_MS:match("^%s*%d+%s*[%d,%s]*$") then
    error("--webhook-retry-ms must be a comma-separated list of milliseconds", 0)
  end
  local threads = int_option(opts, "threads", config.int("SANDBOX_THREADS", 0))
  local workers = int_option(opts, "workers", config.int("SANDBOX_WORKERS", 8))
  local port = int_option(opts, "port", config.int("SANDBOX_PORT", 8900))
  local listen = opts.host or config.get("SANDBOX_HOST", "127.0.0.1")

  assert(fs.mkdir(data .. "/attachments"))
  fs.remove(data .. "/sandbox.json")  -- a stale one would point at a dead port
  assert(store.open(data .. "/sandbox.db"))
  local db = require "sandbox.db"
  local agents = require "sandbox.agents"
  db.migrate()
  local seller = agents.ensure("seller", "Sandbox Seller", 0)
  local buyer = agents.ensure("buyer", "Sandbox Buyer", 1000000)
  local model_key = opts.model_key or config.get("SANDBOX_MODEL_API_KEY") or db.setting("model_api_key")
                    or ("sk-or-v1-sandbox-" .. crypto.random_hex(24))
  db.set_setting("model_api_key", model_key)
  db.set_setting("image_latency_ms", int_option(opts, "image_latency_ms", config.int("SANDBOX_IMAGE_LATENCY_MS", 0)))
  db.set_setting("text_latency_ms", int_option(opts, "text_latency_ms", config.int("SANDBOX_TEXT_LATENCY_MS", 0)))
  settings.SANDBOX_MODEL_API_KEY = model_key
  for name, value in pairs(settings) do config.set(name, tostring(value)) end

  local credentials = {}
  for role, agent in pairs({seller = seller, buyer = buyer}) do
    credentials[role] = data .. "/" .. role .. ".json"
    assert(fs.write(credentials[role], json.encode({api_key = agent.api_key, agent_id = agent.id}) .. "\n"))
  end

  pool.start{module = "sandbox.app", workers = workers}
  -- Every client is on loopback, so no per-client cap; a slow model call
  -- holds its thread, so by default each connection gets its own.
  local srv, err = server.start{module = "sandbox.app", host = listen, port = port,
                                threads = math.max(threads, 1), per_connection = threads == 0,
                                max_body = settings.SANDBOX_MAX_FILE_BYTES + 1024 * 1024,
                                max_connections = 1024, per_client = 0,
                                timeout_ms = 15 * 60 * 1000}
  if not srv then error(err, 0) end
  local shown_host = (listen == "0.0.0.0" or listen == "::") and "127.0.0.1" or listen
  local base = string.format("http://%s:%d", shown_host, srv.port)
  local description = {
    port = srv.port, pid = tonumber(io.open("/proc/self/stat"):read("l"):match("^(%d+)")),
    base_url = base, market_url = base .. "/api", model_url = base .. "/api/v1",
    model_api_key = model_key, data_dir = data,
    seller = {agent_id = seller.id, api_key = seller.api_key, credentials_file = credentials.seller},
    buyer = {agent_id = buyer.id, api_key = buyer.api_key, credentials_file = credentials.buyer},
  }
  assert(fs.write(data .. "/sandbox.json", json.encode(description) .. "\n"))
  print("sandbox marketplace:  " .. description.market_url)
  print("sandbox model router: " .. description.model_url)
  print("seller credentials:   " .. credentials.seller)
  print("buyer credentials:    " .. credentials.buyer)
  print("sandbox description:  " .. data .. "/sandbox.json")
  io.stdout:flush()
  log.info("sandbox running", {port = srv.port, data = data, threads = threads, workers = workers})
  local sig = host.wait()
  srv:stop()
  pool.stop(2000)
  log.info("sandbox stopped", {signal = sig})
  return 0
end

-- The buyer's commands -----------------------------------------------------

local function show_status(s)
  local o = s.order
  print(string.format("order %s: %s", o.id, o.status))
  print(string.format("  listing %s (%s), price %s", o.listing_id, tostring(o.listing_title), tostring(o.price)))
  if o.delivery_note ~= json.null then print("  delivery note: " .. tostring(o.delivery_note)) end
  if o.cancel_reason ~= json.null then print("  cancelled: " .. tostring(o.cancel_reason)) end
  if o.dispute_reason ~= json.null then print("  disputed: " .. tostring(o.dispute_reason)) end
  print(string.format("messages (%d):", #s.messages))
  for _, m in ipairs(s.messages) do
    print(string.format("  %s %s: %s", m.created_at, tostring(m.sender.name), m.content))
  end
  print(string.format("attachments (%d, %d bytes):", s.attachments.file_count, s.attachments.total_size))
  for _, f in ipairs(s.attachments.files) do
    print(string.format("  %s %s %d bytes %s", f.file_type, f.filename, f.size, f.download_url))
  end
end

local function run_command(name, opts, words)
  local buyer_lib = require "sandbox.buyer"
  local b = buyer_lib.connect(opts.data or config.get("SANDBOX_DATA_DIR", "./data/sandbox"), {timeout_ms = 1000})
  local order_id = words[2]
  local function need_order()
    if not order_id then error(name .. " needs an ORDER id", 0) end
  end
  if name == "buy" then
    if not opts.say then error("buy needs --say TEXT", 0) end
    b:buy{listing_id = opts.listing, say = opts.say, requirement = opts.requirement,
          timeout_ms = int_option(opts, "timeout_ms", 60000), on_step = print}
  elseif name == "message" then
    need_order()
    local text = words[3] or opts.say
    if not text then error("message needs the TEXT to send", 0) end
    local m = b:message(order_id, text)
    print("sent message " .. m.id)
  elseif name == "confirm" then
    need_order()
    print("order " .. order_id .. " is " .. b:confirm(order_id).status)
  elseif name == "cancel" then
    need_order()
    print("order " .. order_id .. " is " .. b:cancel(order_id, opts.reason).status)
  elseif name == "dispute" then
    need_order()
    if not opts.reason then error("dispute needs --reason TEXT", 0) end
    print("order " .. order_id .. " is " .. b:dispute(order_id, opts.reason).status)
  elseif name == "status" then
    need_order()
    local s = b:status(order_id)
    if opts.json then print(json.encode(s)) else show_status(s) end
  end
  return 0
end

local ok, opts, words = pcall(parse, {...})
if not ok then
  io.stderr:write("skudemo sandbox: ", opts, "\n", usage)
  return 2
end
if opts.help then
  io.stdout:write(usage)
  return 0
end
local command = words[1]
if command and not commands[command] then
  io.stderr:write("skudemo sandbox: unknown command '", command, "'\n", usage)
  return 2
end
local done, result = pcall(function()
  if command then return run_command(command, opts, words) end
  return run_sandbox(opts)
end)
if not done then
  io.stderr:write("skudemo sandbox: ", tostring(result), "\n")
  return 1
end
return result
