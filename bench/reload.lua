-- reload.lua PID HEALTHZ_URL N - sends N SIGHUPs to PID, each after the last
-- took effect, and prints how long until a request was answered by the new
-- generation of scripts.
local http, json, time = require "http", require "json", require "time"
local pid, url, n = arg[1], arg[2], tonumber(arg[3]) or 20

local function generation()
  local res = http.request{url = url, timeout = 2000}
  local body = res and json.decode(res.body)
  if type(body) ~= "table" then return nil end
  local s = body.scripts or body
  return s.state_generation or s.generation
end

local took = {}
for i = 1, n do
  local before = assert(generation(), "no generation at " .. url)
  local t0 = time.mono()
  os.execute("kill -HUP " .. pid)
  local deadline = t0 + 5000
  while true do
    local g = generation()
    if g and g > before then break end
    if time.mono() > deadline then error("reload " .. i .. " never took effect") end
  end
  took[#took + 1] = time.mono() - t0
  time.sleep(200)
end
table.sort(took)
print(string.format("new code answered in p50 %d ms, max %d ms", took[math.ceil(#took / 2)], took[#took]))
