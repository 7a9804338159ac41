package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local proc = require "proc"
local http = require "http"
local json = require "json"
local crypto = require "crypto"
local time = require "time"

-- A small HTTP/1.1 peer on 127.0.0.1 (until the project's own server can
-- play the other side): it echoes what arrived, and has slow, large,
-- chunked, redirecting and failing routes. It exits by itself after two
-- minutes so a crashed test leaves nothing behind.
local PEER = [=[
import base64, json, os, re, sys, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from urllib.parse import urlparse, parse_qs

def multipart(ctype, body):
    boundary = re.search(r'boundary="?([^";]+)"?', ctype).group(1).encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        head = head.decode("latin-1")
        disp = re.search(r'(?im)^content-disposition:(.*)$', head).group(1)
        name = re.search(r'\bname="([^"]*)"', disp)
        filename = re.search(r'\bfilename="([^"]*)"', disp)
        ct = re.search(r'(?im)^content-type:\s*(.*?)\s*$', head)
        parts.append({"name": name and name.group(1), "filename": filename and filename.group(1),
                      "content_type": ct and ct.group(1),
                      "data": base64.b64encode(data[:-2]).decode()})
    return parts

class Peer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json", extra=()):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        path = url.path
        if path == "/echo":
            self.reply(200, {"method": self.command, "path": self.path, "body": base64.b64encode(body).decode(),
                             "headers": {k.lower(): v for k, v in self.headers.items()},
                             "client_port": self.client_address[1]})
        elif path == "/multipart":
            self.reply(200, {"content_type": self.headers["Content-Type"],
                             "parts": multipart(self.headers["Content-Type"], body)})
        elif path.startswith("/status/"):
            self.reply(int(path[8:]), b"status body", "text/plain")
        elif path == "/slow":
            time.sleep(int(q.get("ms", "1000")) / 1000)
            self.reply(200, b"slow", "text/plain")
        elif path == "/bytes":
            data = bytes(i % 251 for i in range(int(q["n"])))
            if q.get("chunked"):
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(data), 1000):
                    piece = data[i:i + 1000]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.reply(200, data, "application/octet-stream")
        elif path == "/redirect":
            self.reply(302, b"", "text/plain", [("Location", "/echo?from=redirect")])
        elif path == "/headers":
            self.reply(200, b"ok", "text/plain",
                       [("X-Multi", "a"), ("X-Multi", "b"), ("X-Spaced", "  v  "), ("X-Empty", "")])
        else:
            self.reply(404, {"error": "not found"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any

threading.Timer(120, os._exit, [0]).start()
server = ThreadingHTTPServer(("127.0.0.1", 0), Peer)
server.daemon_threads = True
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
]=]

local dir = t.tmpdir("http_client")
local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end
local function entries(d)
  local names = {}
  local p = assert(io.popen("ls -A " .. proc.quote(d)))
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  return names
end

write_file(dir .. "/peer.py", PEER)
local peer = proc.spawn({"python3", dir .. "/peer.py", dir .. "/port"}, {log = dir .. "/peer.log"})
local port = tonumber(t.eventually(function() return proc.slurp(dir .. "/port") end, 10000, "the peer's port"))
local base = "http://127.0.0.1:" .. port

local function expected_bytes(n)
  local out = {}
  for i = 0, n - 1 do out[#out + 1] = string.char(i % 251) end
  return table.concat(out)
end

local function echo(req)
  req.url = req.url or base .. "/echo"
  local res = assert(http.request(req))
  t.eq(res.status, 200)
  local e = json.decode(res.body)
  e.body = crypto.base64_decode(e.body)
  return e, res
end

t.test("GET", function()
  local e, res = echo{}
  t.eq(e.method, "GET")
  t.eq(e.path, "/echo")
  t.eq(e.body, "")
  t.match(e.headers["user-agent"], "^skudemo/")
  t.eq(res.headers["content-type"], "application/json")
  t.eq(res.size, #res.body)
  t.eq(math.type(res.status), "integer")
end)

t.test("POST json sets the content type", function()
  local e = echo{method = "POST", json = {order = "o-1", tags = json.array(), n = 2}}
  t.eq(e.method, "POST")
  t.eq(e.headers["content-type"], "application/json")
  t.eq(e.headers.expect, nil)
  local got = json.decode(e.body)
  t.eq(got.order, "o-1")
  t.eq(got.n, 2)
  t.ok(json.is_array(got.tags))
  t.eq(#got.tags, 0)
end)

t.test("json keeps a given content type; method defaults to POST with a body", function()
  local e = echo{json = {1, 2}, headers = {["Content-Type"] = "application/vnd.x+json"}}
  t.eq(e.method, "POST")
  t.eq(e.headers["content-type"], "application/vnd.x+json")
  t.eq(e.body, "[1,2]")
end)

t.test("raw body, other methods", function()
  local big = string.rep("0123456789", 200000)
  local e = echo{method = "PUT", body = big, headers = {["Content-Type"] = "text/plain"}}
  t.eq(e.method, "PUT")
  t.eq(e.body, big)
  e = echo{method = "PATCH", body = "\0binary\255"}
  t.eq(e.method, "PATCH")
  t.eq(e.body, "\0binary\255")
  e = echo{method = "DELETE"}
  t.eq(e.method, "DELETE")
  e = echo{method = "POST"}
  t.eq(e.headers["content-length"], "0")
  local res = assert(http.request{method = "HEAD", url = base .. "/echo"})
  t.eq(res.status, 200)
  t.eq(res.body, "")
end)

t.test("custom request headers", function()
  local e = echo{headers = {["X-Token"] = "abc", ["User-Agent"] = "tester/1", ["X-Number"] = 42,
                            ["X-Empty"] = ""}}
  t.eq(e.headers["x-token"], "abc")
  t.eq(e.headers["user-agent"], "tester/1")
  t.eq(e.headers["x-number"], "42")
  t.eq(e.headers["x-empty"], "")
end)

t.test("response headers: lower case, trimmed, repeats joined", function()
  local res = assert(http.request{url = base .. "/headers"})
  t.eq(res.headers["content-type"], "text/plain")
  t.eq(res.headers["x-multi"], "a, b")
  t.eq(res.headers["x-spaced"], "v")
  t.eq(res.headers["x-empty"], "")
  t.eq(res.headers["X-Multi"], nil)
end)

t.test("non-2xx statuses are results, not errors", function()
  for _, status in ipairs{201, 400, 404, 422, 500, 503} do
    local res, err = http.request{url = base .. "/status/" .. status}
    t.ok(res, err)
    t.eq(res.status, status)
    t.eq(res.body, "status body")
  end
end)

t.test("multipart upload", function()
  local file = dir .. "/upload.png"
  local file_data = "\137PNG\r\n\26\n" .. crypto.random_bytes(3000)
  write_file(file, file_data)
  local res = assert(http.request{url = base .. "/multipart", multipart = {
    {name = "title", value = "a red fox"},
    {name = "count", value = 3},
    {name = "inline", data = "\0\1 raw \255", filename = "raw.bin", content_type = "application/x-raw"},
    {name = "image", file = file, content_type = "image/png"},
    {name = "renamed", file = file, filename = "delivery.png"},
  }})
  t.eq(res.status, 200)
  local got = json.decode(res.body)
  t.match(got.content_type, "^multipart/form%-data; boundary=")
  local parts = got.parts
  t.eq(#parts, 5)
  t.eq(parts[1].name, "title")
  t.eq(crypto.base64_decode(parts[1].data), "a red fox")
  t.eq(parts[1].filename, json.null)
  t.eq(crypto.base64_decode(parts[2].data), "3")
  t.eq(parts[3].filename, "raw.bin")
  t.eq(parts[3].content_type, "application/x-raw")
  t.eq(crypto.base64_decode(parts[3].data), "\0\1 raw \255")
  t.eq(parts[4].filename, "upload.png")
  t.eq(parts[4].content_type, "image/png")
  t.eq(crypto.base64_decode(parts[4].data), file_data)
  t.eq(parts[5].filename, "delivery.png")
end)

t.test("multipart with a missing file is nil, message", function()
  local res, err, code = http.request{url = base .. "/multipart", multipart = {{name = "f", file = dir .. "/nope"}}}
  t.eq(res, nil)
  t.match(err, "cannot read .*nope")
  t.eq(code, "io")
end)

t.test("timeout is nil, message", function()
  local start = time.mono()
  local res, err, code = http.request{url = base .. "/slow?ms=3000", timeout = 300}
  t.eq(res, nil)
  t.eq(err, "timeout after 300 ms")
  t.eq(code, "timeout")
  t.ok(time.mono() - start < 2000, "returned in time")
end)

t.test("connection refused is nil, message", function()
  local free = proc.free_port()
  local res, err, code = http.request{url = "http://127.0.0.1:" .. free .. "/", timeout = 2000}
  t.eq(res, nil)
  t.eq(err, "connection refused")
  t.eq(code, "connect")
end)

t.test("unsupported scheme is nil, message", function()
  local res, err, code = http.request{url = "ftp://127.0.0.1:" .. port .. "/x"}
  t.eq(res, nil)
  t.match(err, "^invalid url")
  t.eq(code, "url")
  res, err = http.request{url = "file:///etc/passwd"}
  t.eq(res, nil)
  t.match(err, "^invalid url")
end)

t.test("output streams the body to a file", function()
  local out_dir = dir .. "/out"
  assert(os.execute("mkdir -p " .. proc.quote(out_dir)))
  local res = assert(http.request{url = base .. "/bytes?n=200000", output = out_dir .. "/image.bin"})
  t.eq(res.status, 200)
  t.eq(res.body, nil)
  t.eq(res.size, 200000)
  t.eq(proc.slurp(out_dir .. "/image.bin"), expected_bytes(200000))
  res = assert(http.request{url = base .. "/bytes?n=10", output = out_dir .. "/image.bin"})
  t.eq(proc.slurp(out_dir .. "/image.bin"), expected_bytes(10))
  t.same(entries(out_dir), {"image.bin"})
end)

t.test("output into a missing directory is nil, message", function()
  local res, err, code = http.request{url = base .. "/bytes?n=10", output = dir .. "/missing/x.bin"}
  t.eq(res, nil)
  t.match(err, "^cannot write .*missing/x%.bin: No such file")
  t.eq(code, "io")
end)

t.test("max_size", function()
  local res = assert(http.request{url = base .. "/bytes?n=1000", max_size = 1000})
  t.eq(#res.body, 1000)
  for _, url in ipairs{base .. "/bytes?n=1001", base .. "/bytes?n=50000&chunked=1"} do
    local r, err, code = http.request{url = url, max_size = 1000}
    t.eq(r, nil, url)
    t.eq(err, "response too large")
    t.eq(code, "too_large")
  end
  local out_dir = dir .. "/big"
  assert(os.execute("mkdir -p " .. proc.quote(out_dir)))
  local r, err = http.request{url = base .. "/bytes?n=50000&chunked=1", max_size = 1000,
                              output = out_dir .. "/big.bin"}
  t.eq(r, nil)
  t.eq(err, "response too large")
  t.same(entries(out_dir), {}, "no file, no temporary left")
  res = assert(http.request{url = base .. "/bytes?n=30000&chunked=1"})
  t.eq(res.body, expected_bytes(30000))
end)

t.test("redirects are followed only when asked", function()
  local res = assert(http.request{url = base .. "/redirect"})
  t.eq(res.status, 302)
  t.eq(res.headers.location, "/echo?from=redirect")
  local e = echo{url = base .. "/redirect", follow = true}
  t.eq(e.path, "/echo?from=redirect")
end)

t.test("connections are reused within a thread", function()
  local first = echo{}
  local second = echo{}
  local third = echo{method = "POST", json = {x = 1}}
  t.eq(second.client_port, first.client_port)
  t.eq(third.client_port, first.client_port)
end)

t.test("misuse raises", function()
  t.raises(function() http.request() end)
  t.raises(function() http.request{} end, "url")
  t.raises(function() http.request{url = 5} end, "url")
  t.raises(function() http.request{url = base, headers = "x"} end, "headers")
  t.raises(function() http.request{url = base, headers = {["X-A"] = {}}} end, "headers")
  t.raises(function() http.request{url = base, headers = {["X-A"] = "a\r\nInjected: 1"}} end, "invalid header")
  t.raises(function() http.request{url = base, headers = {["Bad Name"] = "a"}} end, "invalid header")
  t.raises(function() http.request{url = base, timeout = -1} end, "timeout")
  t.raises(function() http.request{url = base, timeout = "soon"} end, "timeout")
  t.raises(function() http.request{url = base, max_size = 1.5} end, "max_size")
  t.raises(function() http.request{url = base, follow = "yes"} end, "follow")
  t.raises(function() http.request{url = base, body = "a", json = {}} end, "only one")
  t.raises(function() http.request{url = base, body = {}} end, "body")
  t.raises(function() http.request{url = base, json = {f = print}} end, "function")
  t.raises(function() http.request{url = base, method = "get"} end, "method")
  t.raises(function() http.request{url = base, multipart = {{value = "x"}}} end, "no name")
  t.raises(function() http.request{url = base, multipart = {{name = "a"}}} end, "one of")
  t.raises(function() http.request{url = base, multipart = {{name = "a", value = "x", data = "y"}}} end, "one of")
  t.raises(function() http.request{url = base, multipart = {"x"}} end, "multipart")
  -- the handle is still fine after every raise
  t.eq(echo{}.method, "GET")
end)

t.test("many requests in a row on one handle stay apart", function()
  for i = 1, 50 do
    local e = echo{method = "POST", body = "n" .. i, headers = {["X-I"] = tostring(i)}}
    t.eq(e.body, "n" .. i)
    t.eq(e.headers["x-i"], tostring(i))
  end
end)

t.test("server threads keep their own handles, freed when the threads end", function()
  local server = require "server"
  local srv = assert(server.start{module = "http_client_app", host = "127.0.0.1", port = 0, threads = 2})
  local ports = {}
  for _ = 1, 12 do
    local res = assert(http.request{url = "http://127.0.0.1:" .. srv.port .. "/relay?port=" .. port})
    t.eq(res.status, 200, res.body)
    ports[json.decode(res.body).client_port] = true
  end
  local distinct = 0
  for _ in pairs(ports) do distinct = distinct + 1 end
  t.ok(distinct >= 1 and distinct <= 2, "at most one peer connection per server thread")
  srv:stop()
end)

peer:stop()
return t.done()
