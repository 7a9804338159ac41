-- proc.lua - start, signal and wait for real processes in end-to-end tests.
--
--   local proc = require "proc"
--   local p = proc.spawn{"serve"}, {env = {APP_PORT = "0"}, log = dir .. "/serve.log"}
--   p:kill("KILL"); p:wait()
local P = {}
P.__index = P

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
P.quote = quote

-- The skudemo binary under test (tests/run sets SKUDEMO_BIN).
function P.bin()
  return os.getenv("SKUDEMO_BIN") or "./skudemo"
end

-- Starts argv (a list; argv[1] is the program) in the background with
-- extra environment variables; stdout and stderr go to opts.log.
-- Returns a process object with .pid.
function P.spawn(argv, opts)
  opts = opts or {}
  local parts = {}
  for k, v in pairs(opts.env or {}) do parts[#parts + 1] = k .. "=" .. quote(v) end
  local words = {}
  for i, a in ipairs(argv) do words[i] = quote(a) end
  local log = opts.log or "/dev/null"
  local cmd = string.format("%s %s >>%s 2>&1 </dev/null & echo $!",
    #parts > 0 and ("env " .. table.concat(parts, " ")) or "", table.concat(words, " "), quote(log))
  if opts.cwd then cmd = "cd " .. quote(opts.cwd) .. " && " .. cmd end
  local f = assert(io.popen(cmd))
  local pid = tonumber(f:read("l"))
  f:close()
  assert(pid, "could not start " .. table.concat(argv, " "))
  return setmetatable({pid = pid, log = log, argv = argv}, P)
end

-- Starts `skudemo ARGS...`.
function P.skudemo(args, opts)
  local argv = {P.bin()}
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return P.spawn(argv, opts)
end

function P:alive()
  return os.execute("kill -0 " .. self.pid .. " 2>/dev/null") == true
end

function P:kill(sig)
  os.execute(string.format("kill -%s %d 2>/dev/null", sig or "TERM", self.pid))
end

-- Waits until the process is gone (up to timeout_ms); true if it ended.
function P:wait(timeout_ms)
  local time = require "time"
  local deadline = time.mono() + (timeout_ms or 10000)
  while time.mono() < deadline do
    if not self:alive() then return true end
    time.sleep(20)
  end
  return false
end

-- Stops the process: TERM, then KILL if it has not ended in time.
function P:stop(timeout_ms)
  if not self:alive() then return true end
  self:kill("TERM")
  if self:wait(timeout_ms or 10000) then return true end
  self:kill("KILL")
  return self:wait(2000)
end

-- The process's log so far.
function P:output()
  local f = io.open(self.log)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
function P.free_port()
  local f = assert(io.popen([[python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])']]))
  local port = tonumber(f:read("l"))
  f:close()
  return assert(port, "no free port")
end

-- Polls url until it answers any HTTP status (or timeout_ms passes).
function P.wait_http(url, timeout_ms)
  local http, time = require "http", require "time"
  local deadline = time.mono() + (timeout_ms or 10000)
  repeat
    local res = http.request{method = "GET", url = url, timeout = 1000}
    if res then return res end
    time.sleep(25)
  until time.mono() > deadline
  error("nothing answered at " .. url)
end

-- Reads a whole file, or nil.
function P.slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

return P
