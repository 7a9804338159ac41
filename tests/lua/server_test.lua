-- server_test.lua - the HTTP server over real HTTP on 127.0.0.1: routing,
-- request and response shapes, forms, limits, errors, group commit, stats.
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local proc = require "proc"
local server = require "server"
local json = require "json"
local crypto = require "crypto"
local store = require "store"
local time = require "time"
local http = require "http"

local dir = t.tmpdir("server")
local q = proc.quote

local request = http.request

local srv
local function url(path, s) return string.format("http://127.0.0.1:%d%s", (s or srv).port, path) end
local function get(path) return assert(request{url = url(path)}) end
local function decode(res) return assert(json.decode(res.body)) end

-- Runs a small Python program against the server; returns its output.
local function python(code, ...)
  local path = dir .. "/probe.py"
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local args = {}
  for i, a in ipairs{...} do args[i] = q(tostring(a)) end
  local p = assert(io.popen("python3 " .. q(path) .. " " .. table.concat(args, " ")))
  local out = p:read("a")
  p:close()
  return out
end

t.test("start on port 0 reads the real port back", function()
  srv = assert(server.start{module = "server_app", host = "127.0.0.1", port = 0, threads = 2,
                            max_body = 64 * 1024, max_header = 8192, per_client = 4,
                            timeout_ms = 300, idle_timeout_s = 1})
  t.ok(srv.port > 0, "a port")
  t.eq(srv.host, "127.0.0.1")
end)

t.test("a malformed route list fails at start", function()
  package.preload.bad_routes = function()
    return {routes = {{"GET", "/fine", function() end}, {"GET", "no-slash", function() end}}}
  end
  t.raises(function() server.start{module = "bad_routes", host = "127.0.0.1", port = 0} end,
           "routes%[2%] 'no%-slash': a pattern starts with '/'")
  package.preload.no_routes = function() return {} end
  t.raises(function() server.start{module = "no_routes", host = "127.0.0.1", port = 0} end, "no routes list")
end)

t.test("routing and path parameters", function()
  t.same(decode(get("/hello/ana")), {hello = "ana"})
  t.same(decode(get("/orders/o-17/items/3")), {id = "o-17", item = "3"})
  t.same(decode(get("/files/a/b/c.png")), {path = "a/b/c.png"})
  t.eq(get("/hello/").status, 404, "an empty parameter does not match")
  t.eq(get("/hello/ana/more").status, 404, "a segment too many")
  local head = assert(request{method = "HEAD", url = url("/hello/ana")})
  t.eq(head.status, 200, "HEAD runs the GET route")
  t.eq(head.body, "")
end)

t.test("query parameters are url-decoded", function()
  t.same(decode(get("/query?a=1+2&b=%C3%A9t%C3%A9&c=&d=x%26y")), {a = "1 2", b = "été", c = "", d = "x&y"})
end)

t.test("request headers lower case, remote address, response headers", function()
  local res = assert(request{url = url("/request"), headers = {["X-Trace-Id"] = "abc 123"}})
  t.eq(res.status, 200)
  t.eq(res.headers["x-custom"], "yes")
  t.eq(res.headers["x-number"], "7")
  local seen = decode(res)
  t.eq(seen.method, "GET")
  t.eq(seen.path, "/request")
  t.eq(seen.headers["x-trace-id"], "abc 123")
  t.eq(seen.remote, "127.0.0.1")
end)

t.test("JSON body in, JSON response out", function()
  local res = assert(request{method = "POST", url = url("/json"), headers = {["Content-Type"] = "application/json"},
                             body = json.encode{id = "o-1", items = {1, 2, 3}, total = 12.5}})
  t.eq(res.status, 201)
  t.eq(res.headers["content-type"], "application/json")
  t.same(decode(res), {id = "o-1", items = 3, total = 12.5})
end)

t.test("an empty array stays an array; a string body is text", function()
  t.eq(get("/empty").body, '{"items":[]}')
  local res = get("/text")
  t.eq(res.body, "plain words")
  t.match(res.headers["content-type"], "^text/plain")
end)

t.test("multipart upload: fields and a binary file round trip", function()
  local bytes = {}
  for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
  local data = table.concat(bytes) .. crypto.random_bytes(5000) .. "\r\n--not-a-boundary\r\n"
  local path = dir .. "/picture.png"
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  local res = assert(request{method = "POST", url = url("/upload"), multipart = {
    {name = "title", value = "a red fox"}, {name = "note", value = "two words"},
    {name = "image", file = path, filename = "fox.png", content_type = "image/png"}}})
  t.eq(res.status, 200)
  local got = decode(res)
  t.same(got.form, {title = "a red fox", note = "two words"})
  t.eq(#got.files, 1)
  t.eq(got.files[1].name, "image")
  t.eq(got.files[1].filename, "fox.png")
  t.eq(got.files[1].content_type, "image/png")
  t.ok(crypto.base64_decode(got.files[1].data) == data, "the file's bytes came back unchanged")
end)

t.test("a malformed multipart body is a 400", function()
  local res = assert(request{method = "POST", url = url("/upload"),
    headers = {["Content-Type"] = "multipart/form-data; boundary=XYZ"}, body = "no parts here"})
  t.eq(res.status, 400)
  t.eq(decode(res).success, false)
end)

t.test("urlencoded form", function()
  local res = assert(request{method = "POST", url = url("/form"),
    headers = {["Content-Type"] = "application/x-www-form-urlencoded"}, body = "a=1+2&b=%26x&flag"})
  t.same(decode(res).form, {a = "1 2", b = "&x", flag = ""})
end)

t.test("unknown path is 404 JSON, wrong method is 405 with Allow", function()
  local res = get("/nowhere")
  t.eq(res.status, 404)
  t.eq(res.headers["content-type"], "application/json")
  t.same(decode(res), {success = false, error = "not found"})
  res = assert(request{method = "DELETE", url = url("/echo")})
  t.eq(res.status, 405)
  t.eq(res.headers["allow"], "POST, PUT")
end)

t.test("a body over max_body is 413 and the server goes on", function()
  local big = string.rep("x", 100 * 1024)
  local res = assert(request{method = "POST", url = url("/echo"), body = big})
  t.eq(res.status, 413)
  t.same(decode(res), {success = false, error = "request body too large"})
  res = assert(request{method = "POST", url = url("/echo"), body = big,
                       headers = {["Transfer-Encoding"] = "chunked"}})
  t.eq(res.status, 413, "chunked, counted as it arrives")
  res = assert(request{method = "POST", url = url("/echo"), body = string.rep("y", 60 * 1024)})
  t.eq(res.status, 200, "just under the limit")
  t.eq(#res.body, 60 * 1024)
  t.eq(get("/hello/again").status, 200)
end)

t.test("headers over max_header are 431", function()
  local res = assert(request{url = url("/hello/x"), headers = {["X-Big"] = string.rep("h", 10 * 1024)}})
  t.eq(res.status, 431)
  t.same(decode(res), {success = false, error = "request headers too large"})
  -- far beyond: libmicrohttpd's own 431 (an HTML body) before any handler runs
  res = assert(request{url = url("/hello/x"), headers = {["X-Big"] = string.rep("h", 64 * 1024)}})
  t.eq(res.status, 431)
  t.eq(get("/hello/again").status, 200)
end)

t.test("a handler error is a 500 JSON and the server lives on", function()
  local res = get("/boom")
  t.eq(res.status, 500)
  t.same(decode(res), {success = false, error = "internal error"})
  t.eq(get("/bad-status").status, 500, "a status that is no HTTP status")
  t.eq(get("/hello/still").status, 200)
end)

t.test("an endless handler is stopped at the time limit with 503", function()
  local started = time.mono()
  local res = get("/loop")
  local took = time.mono() - started
  t.eq(res.status, 503)
  t.same(decode(res), {success = false, error = "request timed out"})
  t.ok(took < 2000, "answered in " .. took .. " ms")
  for _ = 1, 4 do t.eq(get("/hello/after").status, 200) end
end)

t.test("server.file sends a file, 404 when it cannot be opened", function()
  local path = dir .. "/small.png"
  local f = assert(io.open(path, "wb"))
  f:write("\137PNG fake bytes")
  f:close()
  local res = get("/file?path=" .. path)
  t.eq(res.status, 200)
  t.eq(res.body, "\137PNG fake bytes")
  t.eq(res.headers["content-type"], "image/png")
  res = get("/file?path=" .. dir .. "/missing.png")
  t.eq(res.status, 404)
  t.same(decode(res), {success = false, error = "not found"})
end)

t.test("a slow client is cut off after the idle timeout", function()
  local out = python([[
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /hello/slow HTTP/1.1\r\nHost: x\r\n")
started = time.time()
s.settimeout(10)
data = s.recv(100)
print("%.2f %d" % (time.time() - started, len(data)))
]], srv.port)
  local secs, got = out:match("([%d.]+) (%d+)")
  t.ok(secs, "probe output: " .. out)
  t.eq(tonumber(got), 0, "closed without an answer")
  t.ok(tonumber(secs) >= 0.5 and tonumber(secs) < 5, "closed after " .. secs .. " s")
end)

t.test("connections per client are limited", function()
  local out = python([[
import socket, sys
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
extra = socket.create_connection(("127.0.0.1", port))
extra.settimeout(5)
try:
    extra.sendall(b"GET /hello/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    refused = extra.recv(100) == b""
except OSError:
    refused = True
for s in held:
    s.close()
print("refused" if refused else "served")
]], srv.port)
  t.eq(out:match("%a+"), "refused")
  t.eventually(function() local res = request{url = url("/hello/x")} return res and res.status == 200 end,
               5000, "the client served again")
end)

t.test("two servers at once; stop is idempotent", function()
  local other = assert(server.start{module = "server_app", host = "127.0.0.1", port = 0, threads = 1})
  t.ok(other.port ~= srv.port)
  t.eq(get("/hello/one").status, 200)
  t.eq(assert(request{url = url("/hello/two", other)}).status, 200)
  other:stop()
  other:stop()
  t.ok(not request{url = url("/hello/two", other)}, "nothing listens after stop")
  t.eq(get("/hello/one").status, 200)
  local nope, err = server.start{module = "server_app", host = "127.0.0.1", port = srv.port}
  t.eq(nope, nil)
  t.match(err, "cannot listen")
end)

t.test("handlers that store.sync() answer after their group commit", function()
  store.open(dir .. "/events.db")
  store.exec("CREATE TABLE events(id INTEGER PRIMARY KEY, body TEXT)")
  -- one thread: held answers must not keep it from taking the next request
  local one = assert(server.start{module = "server_app", host = "127.0.0.1", port = 0, threads = 1})
  local cmd = {}
  for i = 1, 32 do
    cmd[#cmd + 1] = string.format("curl -s --max-time 20 -X POST --data-binary event-%d -o %s -w '%%{http_code}' %s >%s &",
      i, q(dir .. "/commit" .. i), q(url("/commit", one)), q(dir .. "/commit" .. i .. ".code"))
  end
  assert(os.execute(table.concat(cmd, " ") .. " wait"))
  local ids, ok = {}, 0
  for i = 1, 32 do
    if proc.slurp(dir .. "/commit" .. i .. ".code") == "200" then
      ok = ok + 1
      ids[decode{body = proc.slurp(dir .. "/commit" .. i)}.id] = true
    end
  end
  one:stop()
  t.eq(ok, 32, "every request answered 200")
  t.eq(store.row("SELECT count(*) AS n FROM events").n, 32)
  local res = assert(request{method = "POST", url = url("/commit"), body = "refused",
                             headers = {["X-Big"] = string.rep("h", 10 * 1024)}})
  t.eq(res.status, 431)
  t.eq(store.row("SELECT count(*) AS n FROM events").n, 32, "a request answered early never reaches its handler")
  for i = 1, 32 do t.ok(ids[i], "id " .. i .. " answered") end
end)

t.test("stop under load answers every request that reached its handler", function()
  for round = 1, 4 do
    local busy = assert(server.start{module = "server_app", host = "127.0.0.1", port = 0, threads = 2})
    local before = store.row("SELECT count(*) AS n FROM events").n
    local cmd = {}
    for i = 1, 40 do
      cmd[#cmd + 1] = string.format("curl -s --max-time 20 -o /dev/null -w '%%{http_code}\\n' -X POST --data-binary x %s &",
        q(url("/commit", busy)))
    end
    local p = assert(io.popen(table.concat(cmd, " ") .. " wait"))
    t.eventually(function() return store.row("SELECT count(*) AS n FROM events").n >= before + 4 * round end,
                 5000, "commits under way")
    busy:stop()
    local answered = select(2, p:read("a"):gsub("200", ""))
    p:close()
    t.eq(store.row("SELECT count(*) AS n FROM events").n - before, answered, "round " .. round)
  end
end)

t.test("stats count requests by route and status, with latency", function()
  local stats = server.stats()
  local function count(method, route, status)
    for _, row in ipairs(stats.requests) do
      if row.method == method and row.route == route and row.status == status then return row.count end
    end
    return 0
  end
  t.ok(count("GET", "/hello/{name}", 200) >= 5, "hello 200s")
  t.ok(count("GET", "/loop", 503) >= 1, "the timeout")
  t.ok(count("", "", 404) >= 1, "unmatched 404s")
  t.ok(count("POST", "/commit", 200) >= 32, "commits")
  t.ok(stats.latency.count > 40, "latency observations")
  local last = stats.latency.buckets[#stats.latency.buckets]
  t.eq(last.le, math.huge)
  t.eq(last.count, stats.latency.count)
  t.ok(stats.latency.sum_ms > 0)
end)

t.test("stop", function()
  srv:stop()
  srv:stop()
  t.ok(not request{url = url("/hello/x")}, "nothing listens after stop")
end)

return t.done()
