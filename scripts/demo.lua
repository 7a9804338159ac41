-- skudemo demo (`make demo`) - a whole order, end to end, on this machine:
-- starts the sandbox (a local marketplace and model router) and `skudemo
-- serve` against it as real processes, publishes the SKU, registers the
-- webhook, then plays a buyer who orders and asks for an image, printing
-- each step as it happens; at the end, the order's status and the path of
-- the delivered image.
--   skudemo demo [--keep] [--say TEXT]
local json, time, crypto, store, fs, http = require "json", require "time", require "crypto", require "store",
  require "fs", require "http"
local buyer_lib = require "sandbox.buyer"

local opts = {say = "Please generate a blue tech-style cover image"}
do
  local i = 1
  while i <= #arg do
    if arg[i] == "--keep" then opts.keep = true
    elseif arg[i] == "--say" and arg[i + 1] then opts.say = arg[i + 1] i = i + 1
    elseif arg[i] == "--help" or arg[i] == "-h" then
      print("usage: skudemo demo [--keep] [--say TEXT]\n\n--keep leaves the sandbox and the server running")
      return 0
    else
      io.stderr:write("skudemo demo: unknown argument ", arg[i], "\n")
      return 2
    end
    i = i + 1
  end
end

local started = time.mono()
local function step(text)
  print(string.format("[%5.1fs] %s", (time.mono() - started) / 1000, text))
  io.stdout:flush()
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The skudemo binary running this script.
local function self_binary()
  local f = io.popen("readlink /proc/$PPID/exe")
  local path = f and f:read("l")
  if f then f:close() end
  return (path and path ~= "") and path or "./skudemo"
end

local bin = self_binary()
local dir = "./data/demo/" .. os.date("!%Y%m%d-%H%M%S") .. "-" .. crypto.random_hex(2)
assert(fs.mkdir(dir .. "/sandbox"))
local env_file = dir .. "/demo.env"
local processes = {}

-- Starts `skudemo ARGS` in the background, output to log; returns its pid.
local function spawn(args, log)
  local words = {quote(bin)}
  for _, a in ipairs(args) do words[#words + 1] = quote(a) end
  local f = assert(io.popen(table.concat(words, " ") .. " >" .. quote(log) .. " 2>&1 </dev/null & echo $!"))
  local pid = tonumber(f:read("l"))
  f:close()
  processes[#processes + 1] = pid
  return pid
end

local function alive(pid)
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

local function stop_all()
  for i = #processes, 1, -1 do
    local pid = processes[i]
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    for _ = 1, 100 do
      if not alive(pid) then break end
      time.sleep(50)
    end
  end
end

-- Runs `skudemo --env demo.env ARGS`, printing its output indented.
local function command(args)
  local words = {quote(bin), "--env", quote(env_file)}
  for _, a in ipairs(args) do words[#words + 1] = quote(a) end
  local f = assert(io.popen(table.concat(words, " ") .. " 2>&1 </dev/null"))
  local out = f:read("a")
  local _, _, code = f:close()
  step("$ skudemo " .. table.concat(args, " "))
  for line in out:gmatch("[^\n]+") do print("           " .. line) end
  if code ~= 0 then error("skudemo " .. args[1] .. " failed", 0) end
  return out
end

local function tail(path, n)
  local text = fs.read(path) or ""
  local lines = {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
  return table.concat(lines, "\n", math.max(1, #lines - (n or 15) + 1))
end

local function wait_for(what, timeout_ms, fn)
  local deadline = time.mono() + timeout_ms
  repeat
    local v = fn()
    if v then return v end
    time.sleep(50)
  until time.mono() > deadline
  error("timed out waiting for " .. what, 0)
end

local function run()
  step("the sandbox: a local marketplace and model router (" .. dir .. "/sandbox)")
  local sandbox_pid = spawn({"sandbox", "--port", "0", "--data", dir .. "/sandbox"}, dir .. "/sandbox.log")
  local info = wait_for("the sandbox to start", 15000, function()
    if not alive(sandbox_pid) then error("the sandbox exited:\n" .. tail(dir .. "/sandbox.log"), 0) end
    return buyer_lib.info(dir .. "/sandbox")
  end)
  step("sandbox ready: marketplace " .. info.market_url .. ", model router " .. info.model_url)

  local settings = buyer_lib.serve_settings(info)
  settings.ADMIN_SECRET = crypto.random_hex(16)
  settings.WEBHOOK_PATH = "/api/v1/webhook/orders"
  settings.WEBHOOK_SECRET = crypto.random_hex(24)
  settings.APP_HOST = "127.0.0.1"
  settings.APP_PORT = 0
  settings.DATA_DIR = dir .. "/data"
  local lines = {}
  for name, value in pairs(settings) do lines[#lines + 1] = name .. "=" .. value end
  table.sort(lines)
  assert(fs.write(env_file, table.concat(lines, "\n") .. "\n"))
  command{"whoami"}
  command{"listing", "create", "--write-env"}

  step("starting skudemo serve (log: " .. dir .. "/serve.log)")
  local serve_pid = spawn({"--env", env_file, "serve"}, dir .. "/serve.log")
  local port = wait_for("skudemo serve to listen", 15000, function()
    if not alive(serve_pid) then error("skudemo serve exited:\n" .. tail(dir .. "/serve.log"), 0) end
    return (fs.read(dir .. "/serve.log") or ""):match("msg=serving.-port=(%d+)")
  end)
  local base = "http://127.0.0.1:" .. port
  step("skudemo serve is listening on " .. base)
  command{"webhook", "set", base}

  local buyer = buyer_lib.connect(dir .. "/sandbox")
  local sku = (fs.read(env_file) or ""):match("SERVICE_SKU_ID=(%S+)")
  local order = buyer:place_order(sku)
  step("buyer: placed order " .. order.id)

  -- follow the order on the seller's side through its timeline
  store.open(dir .. "/data/skudemo.db")
  local seen = 0
  local function follow()
    local ok, rows = pcall(store.query, "SELECT id, kind, detail FROM order_timeline WHERE order_id = ? AND id > ? ORDER BY id",
                           order.id, seen)
    for _, r in ipairs(ok and rows or {}) do
      seen = r.id
      local detail = r.detail and (" " .. r.detail:gsub("%s+", " ")) or ""
      if #detail > 100 then detail = detail:sub(1, 97) .. "..." end
      step("seller: " .. r.kind:gsub("_", " ") .. detail)
    end
  end

  wait_for("the seller to accept", 30000, function()
    follow()
    local o = buyer:order(order.id)
    return o.status == "in_progress" and o
  end)
  wait_for("the guidance message", 30000, function()
    follow()
    return #buyer:messages(order.id) > 0
  end)
  for _, m in ipairs(buyer:messages(order.id)) do step("buyer reads: " .. m.content) end
  buyer:message(order.id, opts.say)
  step("buyer: \"" .. opts.say .. "\"")

  local delivered = wait_for("the delivery", 120000, function()
    follow()
    local o = buyer:order(order.id)
    return o.status == "pending_confirmation" and o
  end)
  follow()
  local files = buyer:attachments(order.id).files or {}
  for _, f in ipairs(files) do
    step(string.format("buyer sees attachment %s (%s, %d bytes)", f.filename, f.content_type, f.size or 0))
  end
  step("order " .. order.id .. " is " .. delivered.status .. ": " .. tostring(delivered.delivery_note))
  buyer:confirm(order.id)
  step("buyer: confirmed")
  wait_for("the order to be archived", 15000, function()
    follow()
    local row = store.row("SELECT state FROM orders WHERE order_id = ?", order.id)
    return row and row.state == "completed"
  end)
  follow()

  local task = store.row("SELECT image_paths FROM tasks WHERE order_id = ? AND status = 'success'", order.id)
  local paths = task and json.decode(task.image_paths) or {}
  print()
  print("order status     " .. buyer:order(order.id).status)
  for _, p in ipairs(paths) do print("delivered image  " .. p) end
  print("task record      " .. dir .. "/data/image_tasks.jsonl")
  print("logs             " .. dir .. "/serve.log, " .. dir .. "/sandbox.log")
  if opts.keep then
    print("still running    sandbox (pid " .. sandbox_pid .. "), skudemo serve on " .. base .. " (pid " .. serve_pid .. ")")
  end
  local health = http.request{method = "GET", url = base .. "/healthz", timeout = 2000}
  if not health or health.status ~= 200 then error("the server's /healthz did not answer 200", 0) end
end

local ok, err = xpcall(run, function(e) return e end)
if not (ok and opts.keep) then stop_all() end
if not ok then
  io.stderr:write("skudemo demo: ", tostring(err):match("^[^\n]*"), "\n")
  local rest = tostring(err):match("\n(.*)$")
  if rest then io.stderr:write(rest, "\n") end
  io.stderr:write("logs: ", dir, "/serve.log, ", dir, "/sandbox.log\n")
  return 1
end
return 0
