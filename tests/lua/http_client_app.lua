-- http_client_app.lua - routes for http_client_test.lua: each request makes
-- an outgoing request from a server thread, so the client runs in threads
-- that end when the server stops.
local http = require "http"

local M = {}

M.routes = {
  {"GET", "/relay", function(req)
    local res, err = http.request{url = "http://127.0.0.1:" .. req.query.port .. "/echo", timeout = 5000}
    if not res then return 502, nil, {error = err} end
    return 200, {["Content-Type"] = "application/json"}, res.body
  end},
}

return M
