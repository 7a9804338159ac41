-- ops.lua - what the machines that watch skudemo read: GET /healthz (no
-- secret, nothing secret shown) and GET /metrics (Prometheus text, for
-- X-Admin-Secret or `Authorization: Bearer METRICS_TOKEN`).
local config, crypto = require "config", require "crypto"
local backoffice = require "backoffice"

local O = {}

local function healthz()
  local status, body = backoffice.health()
  return status, {["cache-control"] = "no-store"}, body
end

-- True when the request may read metrics.
local function may_read_metrics(req)
  local admin, token = config.get("ADMIN_SECRET", ""), config.get("METRICS_TOKEN", "")
  local given = req.headers["x-admin-secret"]
  if given and #admin > 0 and crypto.equal(given, admin) then return true end
  local bearer = (req.headers.authorization or ""):match("^Bearer%s+(.+)$")
  return bearer ~= nil and #token > 0 and crypto.equal(bearer, token)
end

local function metrics_page(req)
  if not may_read_metrics(req) then
    return 401, nil, {success = false, error = "X-Admin-Secret or a METRICS_TOKEN bearer is required"}
  end
  return 200, {["content-type"] = "text/plain; version=0.0.4; charset=utf-8"}, backoffice.metrics_text()
end

O.routes = {
  {"GET", "/healthz", healthz},
  {"GET", "/metrics", metrics_page},
}

return O
