-- admin_page.lua - the seller's back office at /admin: sign-in with
-- ADMIN_SECRET, orders and their timelines, delivered images, what needs a
-- human, requeueing dead jobs. The page itself is plain files under web/admin
-- (restyle them freely); this module serves them and the JSON they read.
--
-- Sessions are stateless: the cookie carries an expiry and a random nonce,
-- signed with HMAC-SHA256 keyed by ADMIN_SECRET, so rotating the secret signs
-- everyone out. Failed sign-ins are counted per client in the store and
-- limited to SIGNIN_ATTEMPTS_PER_MINUTE.
local crypto, config, fs, json, store, pool, time, log =
  require "crypto", require "config", require "fs", require "json", require "store",
  require "pool", require "time", require "log"
local backoffice = require "backoffice"

local A = {}

local COOKIE = "skudemo_session"
local SESSION_MS = 12 * 3600 * 1000
local SECURITY_HEADERS = {
  ["content-security-policy"] = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
  ["x-frame-options"] = "DENY",
  ["referrer-policy"] = "no-referrer",
  ["x-content-type-options"] = "nosniff",
  ["cache-control"] = "no-store",
}
local TYPES = {html = "text/html; charset=utf-8", css = "text/css; charset=utf-8",
               js = "text/javascript; charset=utf-8", png = "image/png", jpg = "image/jpeg",
               jpeg = "image/jpeg", webp = "image/webp", gif = "image/gif", svg = "image/svg+xml",
               ico = "image/x-icon"}

local function headers(extra)
  local h = {}
  for k, v in pairs(SECURITY_HEADERS) do h[k] = v end
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

local function web_dir()
  return config.get("SKUDEMO_WEB_DIR_RESOLVED", "web") .. "/admin"
end

local function secret()
  return config.get("ADMIN_SECRET", "")
end

local function sign(expiry, nonce)
  return crypto.hmac_sha256(secret(), "admin-session:" .. expiry .. ":" .. nonce)
end

-- True when the request carries a valid, unexpired session cookie.
function A.signed_in(req)
  local cookie = req.headers and req.headers.cookie
  local value = cookie and cookie:match(COOKIE .. "=([%w%.]+)")
  if not value or #secret() == 0 then return false end
  local expiry, nonce, mac = value:match("^(%d+)%.(%x+)%.(%x+)$")
  if not expiry or tonumber(expiry) < time.now() then return false end
  return crypto.equal(mac, sign(expiry, nonce))
end

local function redirect(to, extra)
  local h = headers(extra)
  h.location = to
  return 303, h, ""
end

local function send_file(path, name)
  local ext = (name:match("%.(%w+)$") or ""):lower()
  return 200, headers{["content-type"] = TYPES[ext] or "application/octet-stream",
                      ["cache-control"] = "private, max-age=300"}, require("server").file(path)
end

-- A guard for routes that need a session: JSON 401 for the API, a redirect
-- to the sign-in page for pages.
local function guarded(handler, api)
  return function(req)
    if not A.signed_in(req) then
      if api then return 401, headers(), {success = false, error = "sign in first"} end
      return redirect("/admin/login")
    end
    return handler(req)
  end
end

local function failures_in_last_minute(remote)
  local row = store.row("SELECT COUNT(*) AS n FROM admin_signins WHERE remote = ? AND at > ?",
                        remote, time.now() - 60000)
  return row and row.n or 0
end

local function sign_in(req)
  local remote = req.remote or "?"
  local limit = config.int("SIGNIN_ATTEMPTS_PER_MINUTE", 5)
  if failures_in_last_minute(remote) >= limit then
    log.warn("admin sign-in refused: too many attempts", {remote = remote})
    return redirect("/admin/login?error=wait")
  end
  local given = (req.form and req.form.secret) or ""
  if #secret() == 0 or not crypto.equal(given, secret()) then
    store.exec("INSERT INTO admin_signins (remote, at) VALUES (?, ?)", remote, time.now())
    store.exec("DELETE FROM admin_signins WHERE at < ?", time.now() - 3600000)
    log.warn("admin sign-in failed", {remote = remote})
    return redirect("/admin/login?error=1")
  end
  local expiry, nonce = tostring(time.now() + SESSION_MS), crypto.random_hex(16)
  local secure = (req.headers["x-forwarded-proto"] == "https") and "; Secure" or ""
  log.info("admin signed in", {remote = remote})
  return redirect("/admin", {["set-cookie"] = string.format(
    "%s=%s.%s.%s; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=%d%s",
    COOKIE, expiry, nonce, sign(expiry, nonce), SESSION_MS // 1000, secure)})
end

local function sign_out()
  return redirect("/admin/login", {["set-cookie"] = COOKIE .. "=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0"})
end

local function page(name)
  return function()
    return send_file(web_dir() .. "/" .. name, name)
  end
end

local function static(req)
  local name = req.params.file
  if name ~= fs.safe_name(name) or name:sub(1, 1) == "." or not fs.exists(web_dir() .. "/" .. name) then
    return 404, headers(), {success = false, error = "not found"}
  end
  return send_file(web_dir() .. "/" .. name, name)
end

local function image(req)
  local path = backoffice.image_path(req.params.name)
  if not path then return 404, headers(), {success = false, error = "not found"} end
  return send_file(path, req.params.name)
end

local function overview()
  return 200, headers(), backoffice.overview()
end

local function order(req)
  local o = backoffice.order(req.params.id)
  if not o then return 404, headers(), {success = false, error = "no such order"} end
  o.order.id, o.order.status = o.order.order_id, o.order.state
  o.timeline, o.images, o.tasks = json.array(o.timeline), json.array(o.images), json.array(o.tasks)
  return 200, headers(), o
end

local function requeue(req)
  local id = tonumber(req.params.id)
  local ok, err = id and pool.requeue(id)
  if not ok then return 404, headers(), {success = false, error = err or "no such job"} end
  log.info("job requeued from the admin page", {job = id, remote = req.remote})
  return 200, headers(), {success = true, job_id = id}
end

A.routes = {
  {"GET", "/admin", guarded(page("index.html"))},
  {"GET", "/admin/login", page("login.html")},
  {"POST", "/admin/login", sign_in},
  {"POST", "/admin/logout", sign_out},
  {"GET", "/admin/static/{file}", static},
  {"GET", "/admin/images/{name}", guarded(image)},
  {"GET", "/admin/api/overview", guarded(overview, true)},
  {"GET", "/admin/api/orders/{id}", guarded(order, true)},
  {"POST", "/admin/api/jobs/{id}/requeue", guarded(requeue, true)},
}

return A
