-- reload_test.lua - SIGHUP swaps the handlers of a running server: the next
-- request runs the new code, a broken bundle leaves the old one answering,
-- and requests sent across several reloads all succeed.
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local proc = require "proc"
local http = require "http"
local json = require "json"
local time = require "time"

local dir = t.tmpdir("reload")
local lua_dir = dir .. "/lua"
assert(os.execute("mkdir -p " .. proc.quote(lua_dir)))

-- Writes lua/app.lua with the given answer of GET /version.
local function write_app(version, broken)
  local f = assert(io.open(lua_dir .. "/app.lua", "w"))
  f:write(string.format([[
local host = require "host"
return {routes = {
  {"GET", "/version", function() return 200, nil, {version = %q} end},
  {"GET", "/status", function() return 200, nil, host.status() end},
}}
]], version), broken and "this is not Lua (\n" or "")
  f:close()
end

write_app("one")
local port = proc.free_port()
local p = proc.skudemo({"--lua", lua_dir, "run", "tests/lua/reload_server.lua", tostring(port)},
                       {log = dir .. "/server.log"})
local base = "http://127.0.0.1:" .. port

local function get(path)
  local res = assert(http.request{url = base .. path, timeout = 5000})
  return res.status, json.decode(res.body)
end
local function version()
  local status, body = get("/version")
  return status == 200 and body.version
end

t.test("the server answers with the first scripts", function()
  proc.wait_http(base .. "/version")
  t.eq(version(), "one")
end)

t.test("SIGHUP: the next request runs the changed handler", function()
  write_app("two")
  p:kill("HUP")
  t.eventually(function() return version() == "two" end, 5000, "version two")
end)

t.test("a syntax error: the old handler keeps answering, status shows the error", function()
  write_app("three", true)
  p:kill("HUP")
  local status = t.eventually(function()
    local _, s = get("/status")
    return s.last_reload_ok == false and s
  end, 5000, "the failed reload in host.status()")
  t.match(status.last_error, "app.lua")
  t.eq(version(), "two")
  write_app("four")
  p:kill("HUP")
  t.eventually(function() return version() == "four" end, 5000, "version four after the fix")
end)

t.test("requests sent during several reloads all succeed", function()
  local out = dir .. "/load.txt"
  local load = proc.spawn({"python3", "-c", [[
import sys, threading, time, urllib.request
url, stop = sys.argv[1], time.time() + 3
ok, failed, seen, lock = 0, 0, set(), threading.Lock()
def run():
    global ok, failed
    while time.time() < stop:
        try:
            body = urllib.request.urlopen(url, timeout=5).read().decode()
            with lock:
                ok += 1
                seen.add(body)
        except Exception as e:
            with lock:
                failed += 1
threads = [threading.Thread(target=run) for _ in range(4)]
for th in threads: th.start()
for th in threads: th.join()
print(ok, failed, len(seen))
]], base .. "/version"}, {log = out})
  for i = 1, 6 do
    time.sleep(400)
    write_app("load-" .. i)
    p:kill("HUP")
  end
  t.ok(load:wait(15000), "the load finished")
  local ok, failed, versions = (proc.slurp(out) or ""):match("(%d+) (%d+) (%d+)")
  t.ok(ok, "load output: " .. (proc.slurp(out) or ""))
  t.eq(tonumber(failed), 0, "failed requests")
  t.ok(tonumber(ok) > 50, ok .. " requests")
  t.ok(tonumber(versions) >= 3, versions .. " versions seen")
end)

t.test("SIGTERM stops the server", function()
  t.ok(p:stop(10000), "exited")
  t.match(p:output(), "server stopped")
end)

p:stop(2000)
return t.done()
