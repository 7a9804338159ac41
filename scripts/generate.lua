-- skudemo generate "prompt" - the guide's smoke test: asks the running
-- server's admin API for an image, then follows the task to its end.
--   skudemo generate [--order ID] [--type T] [--no-wait] [--timeout-ms N] "prompt"
local http, json, time, settings = require "http", require "json", require "time", require "settings"

local usage = [[
usage: skudemo generate [--order ID] [--type TYPE] [--no-wait] [--timeout-ms N] "prompt"

POSTs the prompt to http://APP_HOST:APP_PORT/api/v1/image/generate with
X-Admin-Secret, prints the task id, then waits for the task and prints its
status, optimized prompt and image paths (DATA_DIR/image_tasks.jsonl has the record).
--order ID also uploads the image to that order.]]

local function fail(msg, code)
  io.stderr:write("skudemo generate: ", msg, "\n")
  return code or 1
end

local opts, words = {type = "social_media_visuals", timeout_ms = 300000}, {}
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--help" or a == "-h" then print(usage) return 0
  elseif a == "--no-wait" then opts.no_wait = true
  elseif a == "--order" or a == "--type" or a == "--timeout-ms" then
    i = i + 1
    if not arg[i] then return fail(a .. " needs a value", 2) end
    if a == "--order" then opts.order_id = arg[i]
    elseif a == "--type" then opts.type = arg[i]
    else opts.timeout_ms = tonumber(arg[i]) or 300000 end
  elseif a:sub(1, 2) == "--" then return fail("unknown option " .. a .. "\n" .. usage, 2)
  else words[#words + 1] = a end
  i = i + 1
end
local input = table.concat(words, " ")
if input == "" then return fail("a prompt is needed\n" .. usage, 2) end
if settings.ADMIN_SECRET == "" then return fail("ADMIN_SECRET is not set (the server's .env has it)") end

local host = settings.APP_HOST
if host == "" or host == "0.0.0.0" then host = "127.0.0.1" elseif host == "::" then host = "[::1]" end
local base = string.format("http://%s:%d", host, settings.APP_PORT)
local headers = {["X-Admin-Secret"] = settings.ADMIN_SECRET}

local res, err = http.request{method = "POST", url = base .. "/api/v1/image/generate", headers = headers,
                              json = {input = input, order_id = opts.order_id, type = opts.type}, timeout = 10000}
if not res then return fail("no server answers at " .. base .. " (" .. tostring(err) .. "): is skudemo serve running?") end
local body = json.decode(res.body or "")
if res.status == 401 then return fail("401 Unauthorized: ADMIN_SECRET here differs from the server's") end
if res.status ~= 200 or type(body) ~= "table" then
  return fail(string.format("the server answered %d: %s", res.status, tostring(res.body)))
end
if not body.success then return fail(tostring(body.message)) end
print("task " .. body.task_id .. ": " .. tostring(body.message))
if opts.no_wait then return 0 end

local deadline = time.mono() + opts.timeout_ms
local last_step
while true do
  local r = http.request{method = "GET", url = base .. "/api/v1/image/tasks/" .. body.task_id, headers = headers,
                         timeout = 10000}
  local task = r and r.status == 200 and json.decode(r.body or "")
  if type(task) == "table" then
    if task.step ~= last_step then
      print("  " .. tostring(task.status) .. (task.step and (" (" .. task.step .. ")") or ""))
      last_step = task.step
    end
    if task.status == "success" or task.status == "failed" then
      if task.optimized_prompt ~= json.null and task.optimized_prompt then print("prompt  " .. task.optimized_prompt) end
      for _, p in ipairs(task.image_paths or {}) do print("image   " .. p) end
      if task.status == "failed" then return fail("the task failed: " .. tostring(task.error_message)) end
      print("record  " .. settings.DATA_DIR .. "/image_tasks.jsonl")
      return 0
    end
  end
  if time.mono() > deadline then return fail("the task is not done after " .. opts.timeout_ms .. " ms") end
  time.sleep(250)
end
