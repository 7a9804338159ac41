-- server_app.lua - the routes server_test.lua talks to over real HTTP.
local json, crypto, server, store, host =
  require "json", require "crypto", require "server", require "store", require "host"

local M = {}

local function upload(req)
  local files = {}
  for i, f in ipairs(req.files) do
    files[i] = {name = f.name, filename = f.filename, content_type = f.content_type,
                data = crypto.base64_encode(f.data)}
  end
  return 200, nil, {form = req.form, files = json.array(files)}
end

M.routes = {
  {"GET", "/hello/{name}", function(req) return 200, nil, {hello = req.params.name} end},
  {"GET", "/orders/{id}/items/{item}", function(req) return 200, nil, req.params end},
  {"GET", "/files/{path...}", function(req) return 200, nil, {path = req.params.path} end},
  {"GET", "/query", function(req) return 200, nil, req.query end},
  {"GET", "/request", function(req)
    return 200, {["X-Custom"] = "yes", ["X-Number"] = 7},
      {method = req.method, path = req.path, headers = req.headers, remote = req.remote}
  end},
  {"POST", "/json", function(req)
    local order = assert(json.decode(req.body))
    return 201, nil, {id = order.id, items = #order.items, total = order.total}
  end},
  {"GET", "/empty", function() return 200, nil, {items = json.array({})} end},
  {"GET", "/text", function() return 200, nil, "plain words" end},
  {"POST", "/echo", function(req) return 200, {["Content-Type"] = "application/octet-stream"}, req.body end},
  {"PUT", "/echo", function(req) return 200, nil, "put" end},
  {"POST", "/upload", upload},
  {"POST", "/form", function(req) return 200, nil, {form = req.form} end},
  {"GET", "/file", function(req) return 200, nil, server.file(req.query.path) end},
  {"GET", "/boom", function() error("the handler broke") end},
  {"GET", "/bad-status", function() return "teapot" end},
  {"GET", "/loop", function() while true do end end},
  {"GET", "/status", function() return 200, nil, host.status() end},
  {"POST", "/commit", function(req)
    local _, id = store.exec("INSERT INTO events(body) VALUES (?)", req.body)
    store.sync()
    return 200, nil, {id = id}
  end},
}

return M
